<?php
declare(strict_types=1);

namespace App;

/**
 * The OrangeScrum settings that come from the environment.
 *
 * Only ever reports whether a key is set: values (passwords, salts) never leave
 * the process.
 */
final class Settings
{
    public const KEYS = [
        'DB_HOST', 'DB_PORT', 'DB_USERNAME', 'DB_PASSWORD', 'DB_NAME',
        'SECURITY_SALT', 'FULL_BASE_URL', 'DEBUG',
        'REDIS_HOST', 'REDIS_PORT', 'REDIS_PASSWORD', 'REDIS_DATABASE', 'QUEUE_URL',
        'STORAGE_ENDPOINT', 'STORAGE_ACCESS_KEY', 'STORAGE_SECRET_KEY', 'STORAGE_BUCKET',
        'STORAGE_REGION', 'STORAGE_PATH_STYLE',
        'SMTP_HOST', 'SMTP_PORT', 'SMTP_USERNAME', 'SMTP_PASSWORD', 'FROM_EMAIL',
    ];

    /** The value of an env key, or $default when it is unset or empty. */
    public static function env(string $key, ?string $default = null): ?string
    {
        $value = getenv($key);

        return $value === false || $value === '' ? $default : $value;
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
