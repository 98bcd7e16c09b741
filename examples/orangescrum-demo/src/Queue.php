<?php
declare(strict_types=1);

namespace App;

use Redis;

/**
 * A job queue in Redis lists: enqueue LPUSHes a JSON message on
 * `queue:<name>`; a worker moves it atomically to `queue:<name>:processing`
 * (BRPOPLPUSH) and removes it there once recorded, so a worker that dies
 * mid-job leaves the message in Redis rather than losing it.
 *
 * The connection comes from QUEUE_URL (redis://[:password@]host:port[/db], as
 * the Community Edition's queue.php) or else from the REDIS_* settings.
 */
final class Queue
{
    private ?Redis $redis = null;

    /** @param array<string, mixed> $config */
    public function __construct(private readonly array $config, private readonly Services $services)
    {
    }

    public function configured(): bool
    {
        return $this->config['Queue']['url'] !== null || $this->services->hasRedis();
    }

    /**
     * @param array<string, mixed> $payload
     * @return string the job id
     */
    public function push(string $kind, array $payload): string
    {
        $id = bin2hex(random_bytes(12));
        $message = json_encode(['id' => $id, 'kind' => $kind, 'payload' => $payload, 'enqueued_at' => gmdate('c')], JSON_THROW_ON_ERROR);
        $this->redis()->lPush($this->key(), $message);

        return $id;
    }

    /**
     * The next message, waiting up to $timeout seconds; null when none came.
     *
     * @return array{id: string, kind: string, payload: array<string, mixed>, enqueued_at: string, raw: string}|null
     */
    public function reserve(int $timeout): ?array
    {
        $raw = $this->redis()->brpoplpush($this->key(), $this->key() . ':processing', max(1, $timeout));
        if (!is_string($raw)) {
            return null;
        }
        $job = json_decode($raw, true);
        if (!is_array($job) || !isset($job['id'], $job['kind'])) {
            $this->ack($raw); // not ours: drop it rather than loop on it

            return null;
        }

        return ['id' => (string)$job['id'], 'kind' => (string)$job['kind'], 'payload' => (array)($job['payload'] ?? []),
            'enqueued_at' => (string)($job['enqueued_at'] ?? gmdate('c')), 'raw' => $raw];
    }

    public function ack(string $raw): void
    {
        $this->redis()->lRem($this->key() . ':processing', $raw, 1);
    }

    /** Put a reserved message back at the head of the queue (it failed; try again later). */
    public function release(string $raw): void
    {
        $redis = $this->redis();
        $redis->multi();
        $redis->lRem($this->key() . ':processing', $raw, 1);
        $redis->rPush($this->key(), $raw);
        $redis->exec();
    }

    public function length(): int
    {
        return (int)$this->redis()->lLen($this->key());
    }

    /** Drop the connection (after an error), so the next call reconnects. */
    public function reset(): void
    {
        $this->redis = null;
        $this->services->reset();
    }

    private function key(): string
    {
        return 'queue:' . $this->config['Queue']['queue'];
    }

    private function redis(): Redis
    {
        if ($this->redis !== null) {
            return $this->redis;
        }
        $url = $this->config['Queue']['url'];
        if ($url === null) {
            return $this->redis = $this->services->redis();
        }
        $parts = parse_url($url);
        if ($parts === false || ($parts['scheme'] ?? '') !== 'redis' || !isset($parts['host'])) {
            throw new ServiceUnavailable('queue: QUEUE_URL must be redis://[:password@]host:port[/database] in this demo');
        }
        $redis = new Redis();
        $where = $parts['host'] . ':' . ($parts['port'] ?? 6379);
        try {
            if (!@$redis->connect($parts['host'], (int)($parts['port'] ?? 6379), (float)$this->config['Redis']['timeout'])) {
                throw new \RedisException('connection refused');
            }
            if (isset($parts['pass']) && !$redis->auth(rawurldecode($parts['pass']))) {
                throw new \RedisException('authentication failed');
            }
            $db = (int)ltrim($parts['path'] ?? '', '/');
            if ($db !== 0) {
                $redis->select($db);
            }
        } catch (\RedisException $e) {
            throw new ServiceUnavailable("queue: cannot connect to Redis at {$where}: " . $e->getMessage(), 0, $e);
        }

        return $this->redis = $redis;
    }
}
