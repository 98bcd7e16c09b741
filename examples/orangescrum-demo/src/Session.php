<?php
declare(strict_types=1);

namespace App;

use RuntimeException;

/**
 * Starts PHP's session with the store OrangeScrum's Session config selects
 * (SESSION_HANDLER):
 *   php, cake   files under tmp/sessions (CakePHP's 'cake' defaults)
 *   cache       the cache engine: Redis when CACHE_ENGINE=redis, else tmp/cache/sessions
 *   database    the `sessions` table in PostgreSQL
 */
final class Session
{
    public const HANDLERS = ['php', 'cake', 'cache', 'database'];

    /** @param array<string, mixed> $config */
    public static function start(array $config, Services $services): string
    {
        if (session_status() === PHP_SESSION_ACTIVE) {
            return self::store($config);
        }
        $s = $config['Session'];
        $store = self::store($config);
        $lifetime = (int)$s['timeout'] * 60;
        ini_set('session.use_strict_mode', '1');
        ini_set('session.use_only_cookies', '1');
        ini_set('session.gc_maxlifetime', (string)$lifetime);
        session_name($s['cookie']);
        session_set_cookie_params([
            'lifetime' => 0,
            'path' => '/',
            'domain' => $s['domain'],
            'secure' => $s['secure'],
            'httponly' => true,
            'samesite' => $s['sameSite'],
        ]);
        $root = $config['root'];
        $prefix = $config['Redis']['prefix'] . 'session_';
        match ($store) {
            'files' => self::files("{$root}/tmp/sessions"),
            'cache-files' => self::files("{$root}/tmp/cache/sessions"),
            'redis' => session_set_save_handler(new RedisSessionHandler($services, $prefix, $lifetime), true),
            'database' => session_set_save_handler(new DatabaseSessionHandler($services, $lifetime), true),
        };
        if (!session_start()) {
            throw new RuntimeException("session: cannot start the {$store} session store");
        }

        return $store;
    }

    /** Where sessions of this configuration live: files, cache-files, redis or database. */
    public static function store(array $config): string
    {
        $handler = (string)$config['Session']['defaults'];

        return match ($handler) {
            'php', 'cake' => 'files',
            'cache' => match ((string)$config['CacheEngine']) {
                'redis' => 'redis',
                'file' => 'cache-files',
                default => throw new ServiceUnavailable("session: CACHE_ENGINE={$config['CacheEngine']} is not supported by this demo (file, redis)"),
            },
            'database' => 'database',
            default => throw new ServiceUnavailable("session: unknown SESSION_HANDLER {$handler} (one of " . implode(', ', self::HANDLERS) . ')'),
        };
    }

    private static function files(string $dir): void
    {
        if (!is_dir($dir) && !@mkdir($dir, 0770, true) && !is_dir($dir)) {
            throw new RuntimeException("session: cannot create {$dir}");
        }
        ini_set('session.save_handler', 'files');
        session_save_path($dir);
    }
}
