<?php
declare(strict_types=1);

namespace App;

use PDO;
use PDOException;
use Redis;
use RedisException;

/**
 * The backing services, connected lazily on first use: a request that needs
 * neither PostgreSQL nor Redis never touches them.
 */
final class Services
{
    private ?PDO $db = null;
    private ?Redis $redis = null;

    /** @param array<string, mixed> $config */
    public function __construct(private readonly array $config)
    {
    }

    public function hasDatabase(): bool
    {
        return $this->config['Datasources']['default']['host'] !== null;
    }

    public function hasRedis(): bool
    {
        return $this->config['Redis']['host'] !== null;
    }

    /** PostgreSQL through pdo_pgsql, errors as exceptions. */
    public function db(): PDO
    {
        if ($this->db !== null) {
            return $this->db;
        }
        $ds = $this->config['Datasources']['default'];
        if ($ds['host'] === null) {
            throw new ServiceUnavailable('database: not configured (set DATABASE_URL or DB_HOST, DB_PORT, DB_USERNAME, DB_PASSWORD, DB_NAME)');
        }
        if (isset($ds['invalid'])) {
            throw new ServiceUnavailable("database: {$ds['invalid']}");
        }
        if (!extension_loaded('pdo_pgsql')) {
            throw new ServiceUnavailable('database: the pdo_pgsql PHP extension is not loaded');
        }
        $dsn = sprintf('pgsql:host=%s;port=%d;dbname=%s;connect_timeout=%d;application_name=orangescrum',
            $ds['host'], $ds['port'], $ds['database'] ?? '', $ds['connectTimeout']);
        if ($ds['sslmode'] !== null) {
            $dsn .= ';sslmode=' . $ds['sslmode'];
        }
        try {
            $this->db = new PDO($dsn, $ds['username'], $ds['password'], [
                PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
                PDO::ATTR_DEFAULT_FETCH_MODE => PDO::FETCH_ASSOC,
            ]);
        } catch (PDOException $e) {
            throw new ServiceUnavailable("database: cannot connect to {$ds['host']}:{$ds['port']}: " . self::reason($e), 0, $e);
        }

        return $this->db;
    }

    /** Redis through phpredis, authenticated and on the configured database. */
    public function redis(): Redis
    {
        if ($this->redis !== null) {
            return $this->redis;
        }
        $r = $this->config['Redis'];
        if ($r['host'] === null) {
            throw new ServiceUnavailable('redis: not configured (set REDIS_HOST, REDIS_PORT, REDIS_PASSWORD, REDIS_DATABASE)');
        }
        if (!extension_loaded('redis')) {
            throw new ServiceUnavailable('redis: the redis PHP extension (phpredis) is not loaded');
        }
        $redis = new Redis();
        try {
            if (!@$redis->connect($r['host'], $r['port'], $r['timeout'])) {
                throw new RedisException('connection refused');
            }
            if ($r['password'] !== null && !$redis->auth($r['password'])) {
                throw new RedisException('authentication failed');
            }
            if ($r['database'] !== 0 && !$redis->select($r['database'])) {
                throw new RedisException("cannot select database {$r['database']}");
            }
        } catch (RedisException $e) {
            throw new ServiceUnavailable("redis: cannot connect to {$r['host']}:{$r['port']}: " . $e->getMessage(), 0, $e);
        }

        return $this->redis = $redis;
    }

    /** Forget the connections (after an error), so the next use reconnects. */
    public function reset(): void
    {
        $this->db = null;
        $this->redis = null;
    }

    /** The server's message without PDO's SQLSTATE prefix noise. */
    public static function reason(PDOException $e): string
    {
        $message = (string)preg_replace('/^SQLSTATE\[[0-9A-Z]+\](: [^:]+:)? (\[\d+\] |\d+ )?/', '', $e->getMessage());

        return trim((string)preg_replace('/\s+/', ' ', $message)); // one line: libpq's messages span several
    }
}
