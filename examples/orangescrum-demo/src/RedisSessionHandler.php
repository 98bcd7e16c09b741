<?php
declare(strict_types=1);

namespace App;

use SessionHandlerInterface;
use SessionUpdateTimestampHandlerInterface;

/** Sessions as Redis strings `<prefix><id>` that expire after the session lifetime. */
final class RedisSessionHandler implements SessionHandlerInterface, SessionUpdateTimestampHandlerInterface
{
    public function __construct(private readonly Services $services, private readonly string $prefix, private readonly int $lifetime)
    {
    }

    public function open(string $path, string $name): bool
    {
        $this->services->redis();

        return true;
    }

    public function close(): bool
    {
        return true;
    }

    public function read(string $id): string|false
    {
        $data = $this->services->redis()->get($this->prefix . $id);

        return is_string($data) ? $data : '';
    }

    public function write(string $id, string $data): bool
    {
        return (bool)$this->services->redis()->setex($this->prefix . $id, $this->lifetime, $data);
    }

    public function destroy(string $id): bool
    {
        $this->services->redis()->del($this->prefix . $id);

        return true;
    }

    public function gc(int $max_lifetime): int|false
    {
        return 0; // keys expire on their own
    }

    public function validateId(string $id): bool
    {
        return (bool)$this->services->redis()->exists($this->prefix . $id);
    }

    public function updateTimestamp(string $id, string $data): bool
    {
        return (bool)$this->services->redis()->expire($this->prefix . $id, $this->lifetime);
    }
}
