<?php
declare(strict_types=1);

/*
 * Application configuration, read from the environment (like OrangeScrum's
 * config/app.php).  Loaded after the composer autoloader.
 */

use App\Settings;

$composer = json_decode((string)file_get_contents(dirname(__DIR__) . '/composer.json'), true) ?: [];

return [
    'App' => [
        'name' => 'OrangeScrum (demo)',
        'version' => $composer['version'] ?? '0.0.0',
        'fullBaseUrl' => Settings::env('FULL_BASE_URL'),
    ],
    'debug' => filter_var(Settings::env('DEBUG', 'false'), FILTER_VALIDATE_BOOLEAN),
    'Security' => ['salt' => Settings::env('SECURITY_SALT')],
    'Datasources' => [
        'default' => [
            'host' => Settings::env('DB_HOST', 'localhost'),
            'port' => (int)Settings::env('DB_PORT', '5432'),
            'username' => Settings::env('DB_USERNAME'),
            'password' => Settings::env('DB_PASSWORD'),
            'database' => Settings::env('DB_NAME'),
        ],
    ],
    'Redis' => [
        'host' => Settings::env('REDIS_HOST'),
        'port' => (int)Settings::env('REDIS_PORT', '6379'),
        'password' => Settings::env('REDIS_PASSWORD'),
        'database' => (int)Settings::env('REDIS_DATABASE', '0'),
    ],
    'Queue' => ['url' => Settings::env('QUEUE_URL')],
    'Storage' => [
        'endpoint' => Settings::env('STORAGE_ENDPOINT'),
        'key' => Settings::env('STORAGE_ACCESS_KEY'),
        'secret' => Settings::env('STORAGE_SECRET_KEY'),
        'bucket' => Settings::env('STORAGE_BUCKET'),
        'region' => Settings::env('STORAGE_REGION', 'us-east-1'),
        'pathStyle' => filter_var(Settings::env('STORAGE_PATH_STYLE', 'false'), FILTER_VALIDATE_BOOLEAN),
    ],
    'Email' => [
        'host' => Settings::env('SMTP_HOST'),
        'port' => (int)Settings::env('SMTP_PORT', '587'),
        'username' => Settings::env('SMTP_USERNAME'),
        'password' => Settings::env('SMTP_PASSWORD'),
        'from' => Settings::env('FROM_EMAIL'),
    ],
];
