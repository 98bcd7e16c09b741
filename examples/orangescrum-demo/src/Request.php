<?php
declare(strict_types=1);

namespace App;

/** The parts of an HTTP request the application reads. */
final class Request
{
    /**
     * @param array<string, mixed> $query
     * @param array<string, mixed> $post form fields
     * @param array<string, mixed> $files $_FILES
     */
    public function __construct(
        public readonly string $method,
        public readonly string $path,
        public readonly array $query = [],
        public readonly array $post = [],
        public readonly array $files = [],
        public readonly string $body = '',
        public readonly string $contentType = '',
    ) {
    }

    public static function fromGlobals(): self
    {
        $type = (string)($_SERVER['CONTENT_TYPE'] ?? '');

        return new self(
            (string)($_SERVER['REQUEST_METHOD'] ?? 'GET'),
            (string)parse_url((string)($_SERVER['REQUEST_URI'] ?? '/'), PHP_URL_PATH),
            $_GET,
            $_POST,
            $_FILES,
            // php://input is empty for multipart/form-data (PHP parsed it into $_FILES)
            str_starts_with($type, 'multipart/form-data') ? '' : (string)file_get_contents('php://input'),
            $type,
        );
    }

    /** A field of a JSON body, a form or the query string, in that order. */
    public function input(string $name): ?string
    {
        if (str_starts_with($this->contentType, 'application/json')) {
            $data = json_decode($this->body, true);
            if (is_array($data) && isset($data[$name]) && is_scalar($data[$name])) {
                return (string)$data[$name];
            }
        }
        foreach ([$this->post, $this->query] as $source) {
            if (isset($source[$name]) && is_scalar($source[$name])) {
                return (string)$source[$name];
            }
        }

        return null;
    }
}
