<?php
declare(strict_types=1);

namespace App;

/**
 * The OrangeScrum settings that come from the environment.
 *
 * /settings only ever reports whether a key is set: values (passwords, salts)
 * never leave the process.
 */
final class Settings
{
    public const KEYS = [
        'DB_HOST', 'DB_PORT', 'DB_USERNAME', 'DB_PASSWORD', 'DB_NAME', 'DATABASE_URL',
        'SECURITY_SALT', 'FULL_BASE_URL', 'DEBUG', 'APP_DEFAULT_TIMEZONE',
        'REDIS_HOST', 'REDIS_PORT', 'REDIS_PASSWORD', 'REDIS_DATABASE', 'REDIS_PREFIX', 'REDIS_TIMEOUT',
        'QUEUE_URL', 'CACHE_ENGINE',
        'SESSION_HANDLER', 'SESSION_COOKIE_NAME', 'SESSION_COOKIE_SECURE', 'SESSION_COOKIE_SAMESITE',
        'SESSION_COOKIE_DOMAIN',
        'STORAGE_ENDPOINT', 'STORAGE_ACCESS_KEY', 'STORAGE_SECRET_KEY', 'STORAGE_BUCKET',
        'STORAGE_REGION', 'STORAGE_PATH_STYLE',
        'EMAIL_TRANSPORT', 'SMTP_HOST', 'SMTP_PORT', 'SMTP_USERNAME', 'SMTP_PASSWORD', 'SMTP_TLS', 'FROM_EMAIL',
    ];

    /** The value of an env key, or $default when it is unset or empty. */
    public static function env(string $key, ?string $default = null): ?string
    {
        $value = getenv($key);

        return $value === false || $value === '' ? $default : $value;
    }

    /** A boolean setting (true/false, 1/0, yes/no, on/off), like filter_var(env(...)). */
    public static function bool(string $key, bool $default): bool
    {
        $value = self::env($key);

        return $value === null ? $default : filter_var($value, FILTER_VALIDATE_BOOLEAN);
    }

    public static function int(string $key, int $default): int
    {
        $value = self::env($key);

        return $value === null ? $default : (int)$value;
    }

    /**
     * The parts of a DATABASE_URL (postgres://user:password@host:port/name?sslmode=...)
     * as Datasources keys; [] when it is unset, an 'invalid' reason when malformed.
     *
     * @return array<string, mixed>
     */
    public static function databaseUrl(?string $url): array
    {
        if ($url === null) {
            return [];
        }
        $parts = parse_url($url);
        if ($parts === false || !in_array($parts['scheme'] ?? '', ['postgres', 'postgresql', 'pgsql'], true) || !isset($parts['host'])) {
            // Reported when the database is first used (never the URL: it holds
            // the password), so that routes without a database keep working.
            return ['host' => 'DATABASE_URL', 'invalid' => 'DATABASE_URL: expected postgres://user:password@host:port/name'];
        }
        parse_str($parts['query'] ?? '', $query);

        return [
            'host' => $parts['host'],
            'port' => (int)($parts['port'] ?? 5432),
            'username' => isset($parts['user']) ? rawurldecode($parts['user']) : null,
            'password' => isset($parts['pass']) ? rawurldecode($parts['pass']) : null,
            'database' => isset($parts['path']) ? rawurldecode(ltrim($parts['path'], '/')) : null,
            'sslmode' => isset($query['sslmode']) && is_string($query['sslmode']) ? $query['sslmode'] : null,
        ];
    }

    /** @return array<string, bool> each key => whether it is set (non-empty) */
    public static function presence(): array
    {
        $presence = [];
        foreach (self::KEYS as $key) {
            $presence[$key] = self::env($key) !== null;
        }

        return $presence;
    }
}
