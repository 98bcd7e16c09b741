<?php
declare(strict_types=1);

/*
 * Application configuration, read from the environment with the names
 * OrangeScrum uses (config/app.php, app_local.php, cache_redis.php and
 * queue.php of the Community Edition).  Loaded by App\Config::load(), which
 * merges the installer's config/app_local.php over it.
 */

use App\Settings;

$composer = json_decode((string)file_get_contents(dirname(__DIR__) . '/composer.json'), true) ?: [];
// DATABASE_URL (postgres://user:password@host:port/name) wins over DB_*, like CakePHP's 'url'.
$databaseUrl = Settings::databaseUrl(Settings::env('DATABASE_URL'));

return [
    'App' => [
        'name' => 'OrangeScrum (demo)',
        'version' => $composer['version'] ?? '0.0.0',
        'fullBaseUrl' => Settings::env('FULL_BASE_URL'),
        'defaultTimezone' => Settings::env('APP_DEFAULT_TIMEZONE', 'UTC'),
    ],
    'debug' => Settings::bool('DEBUG', false),
    'Security' => ['salt' => Settings::env('SECURITY_SALT')],
    'Datasources' => [
        'default' => $databaseUrl + [
            'host' => Settings::env('DB_HOST'),
            'port' => Settings::int('DB_PORT', 5432),
            'username' => Settings::env('DB_USERNAME'),
            'password' => Settings::env('DB_PASSWORD'),
            'database' => Settings::env('DB_NAME'),
            'sslmode' => null,
            'connectTimeout' => 5,
        ],
    ],
    'Redis' => [
        'host' => Settings::env('REDIS_HOST'),
        'port' => Settings::int('REDIS_PORT', 6379),
        'password' => Settings::env('REDIS_PASSWORD'),
        'database' => Settings::int('REDIS_DATABASE', 0),
        'prefix' => Settings::env('REDIS_PREFIX', 'cake_'),
        'timeout' => (float)Settings::int('REDIS_TIMEOUT', 1),
    ],
    // 'file' or 'redis' (the Community Edition also knows 'memcached').
    'CacheEngine' => Settings::env('CACHE_ENGINE', 'file'),
    'Queue' => ['url' => Settings::env('QUEUE_URL'), 'queue' => 'default'],
    'Session' => [
        // 'php' and 'cake': files under tmp/sessions; 'cache': the cache engine
        // (Redis when CACHE_ENGINE=redis); 'database': the sessions table.
        'defaults' => Settings::env('SESSION_HANDLER', 'php'),
        'cookie' => Settings::env('SESSION_COOKIE_NAME', 'PHPSESSID'),
        'secure' => Settings::bool('SESSION_COOKIE_SECURE', true),
        'sameSite' => Settings::env('SESSION_COOKIE_SAMESITE', 'Lax'),
        'domain' => Settings::env('SESSION_COOKIE_DOMAIN', ''),
        'timeout' => 1440,
    ],
    'Storage' => [
        'endpoint' => Settings::env('STORAGE_ENDPOINT'),
        'key' => Settings::env('STORAGE_ACCESS_KEY'),
        'secret' => Settings::env('STORAGE_SECRET_KEY'),
        'bucket' => Settings::env('STORAGE_BUCKET'),
        'region' => Settings::env('STORAGE_REGION', 'us-east-1'),
        'pathStyle' => Settings::bool('STORAGE_PATH_STYLE', false),
    ],
    'Email' => [
        'transport' => Settings::env('EMAIL_TRANSPORT', 'smtp'),
        'host' => Settings::env('SMTP_HOST'),
        'port' => Settings::int('SMTP_PORT', 587),
        'username' => Settings::env('SMTP_USERNAME'),
        'password' => Settings::env('SMTP_PASSWORD'),
        'tls' => Settings::bool('SMTP_TLS', false),
        'from' => Settings::env('FROM_EMAIL'),
    ],
    // Test knob of this demo (not an OrangeScrum setting): a truthy value adds
    // a migration that fails on purpose after changing the schema.
    'Demo' => ['failMigration' => Settings::bool('DEMO_MIGRATION_FAIL', false)],
];
