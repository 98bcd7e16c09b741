<?php
/**
 * OrangeScrum V4 local configuration, read entirely from the environment.
 *
 * The binary embeds the application, so settings come from the environment
 * (.env via docker compose `env_file`, or /etc/orangescrum/orangescrum.env via
 * systemd `EnvironmentFile=`), never from files edited on the server. This file
 * documents the mapping; it is what config/app_local.php in the app does.
 */

$bool = static fn (string $name, bool $default = false): bool =>
    filter_var(getenv($name) === false ? $default : getenv($name), FILTER_VALIDATE_BOOLEAN);

return [
    'debug' => $bool('DEBUG'),
    'App' => [
        'fullBaseUrl' => getenv('FULL_BASE_URL') ?: null,
    ],
    'Security' => [
        'salt' => getenv('SECURITY_SALT'),
    ],
    'Datasources' => [
        'default' => [
            'driver' => \Cake\Database\Driver\Postgres::class,
            'host' => getenv('DB_HOST'),
            'port' => (int)(getenv('DB_PORT') ?: 5432),
            'username' => getenv('DB_USERNAME'),
            'password' => getenv('DB_PASSWORD'),
            'database' => getenv('DB_NAME'),
            'encoding' => 'utf8',
            'timezone' => 'UTC',
            'cacheMetadata' => true,
        ],
    ],
    'Cache' => [
        'default' => [
            'className' => \Cake\Cache\Engine\RedisEngine::class,
            'server' => getenv('REDIS_HOST') ?: '127.0.0.1',
            'port' => (int)(getenv('REDIS_PORT') ?: 6379),
            'password' => getenv('REDIS_PASSWORD') ?: false,
            'database' => (int)(getenv('REDIS_DATABASE') ?: 0),
            'prefix' => 'orangescrum_',
        ],
    ],
    'Queue' => [
        'default' => [
            'url' => getenv('QUEUE_URL') ?: null,
        ],
    ],
    'Storage' => [
        'endpoint' => getenv('STORAGE_ENDPOINT') ?: null,
        'key' => getenv('STORAGE_ACCESS_KEY') ?: null,
        'secret' => getenv('STORAGE_SECRET_KEY') ?: null,
        'bucket' => getenv('STORAGE_BUCKET') ?: null,
        'region' => getenv('STORAGE_REGION') ?: 'us-east-1',
        'use_path_style_endpoint' => $bool('STORAGE_PATH_STYLE'),
    ],
    'EmailTransport' => [
        'default' => [
            'className' => \Cake\Mailer\Transport\SmtpTransport::class,
            'host' => getenv('SMTP_HOST') ?: 'localhost',
            'port' => (int)(getenv('SMTP_PORT') ?: 587),
            'username' => getenv('SMTP_USERNAME') ?: null,
            'password' => getenv('SMTP_PASSWORD') ?: null,
            'tls' => $bool('SMTP_TLS', true),
        ],
    ],
    'Email' => [
        'default' => [
            'transport' => 'default',
            'from' => getenv('FROM_EMAIL') ?: null,
        ],
    ],
];
