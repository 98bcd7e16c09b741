<?php
declare(strict_types=1);

namespace App;

/**
 * A tiny HTTP application: routes a request path to a response.
 */
final class Application
{
    /** @param array<string, mixed> $config the array config/app.php returns */
    public function __construct(private readonly array $config)
    {
    }

    /**
     * @return array{0: int, 1: string, 2: string} status, content type, body
     */
    public function handle(string $method, string $path): array
    {
        return match ($path) {
            '/healthz' => $this->json(200, ['status' => 'ok']),
            '/settings' => $this->json(200, ['settings' => Settings::presence()]),
            '/' => [200, 'text/html; charset=utf-8', $this->home()],
            default => [404, 'text/plain; charset=utf-8', "Not Found\n"],
        };
    }

    public function version(): string
    {
        return (string)($this->config['App']['version'] ?? '0.0.0');
    }

    /** @param array<string, mixed> $data */
    private function json(int $status, array $data): array
    {
        return [$status, 'application/json', json_encode($data, JSON_UNESCAPED_SLASHES) . "\n"];
    }

    private function home(): string
    {
        $name = htmlspecialchars((string)($this->config['App']['name'] ?? 'OrangeScrum'));
        $version = htmlspecialchars($this->version());

        return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            . "<title>{$name}</title></head>\n<body><h1>{$name}</h1>\n"
            . "<p>Version <span id=\"version\">{$version}</span> on PHP " . PHP_VERSION . "</p>\n"
            . "<p><a href=\"/healthz\">/healthz</a> <a href=\"/settings\">/settings</a></p>\n"
            . "</body></html>\n";
    }
}
