<?php
declare(strict_types=1);

namespace App;

use SessionHandlerInterface;
use SessionUpdateTimestampHandlerInterface;

/** Sessions as rows of the `sessions` table (created by a migration). */
final class DatabaseSessionHandler implements SessionHandlerInterface, SessionUpdateTimestampHandlerInterface
{
    public function __construct(private readonly Services $services, private readonly int $lifetime)
    {
    }

    public function open(string $path, string $name): bool
    {
        $this->services->db();

        return true;
    }

    public function close(): bool
    {
        return true;
    }

    public function read(string $id): string|false
    {
        $query = $this->services->db()->prepare('SELECT data FROM sessions WHERE id = ? AND expires > ?');
        $query->execute([$id, time()]);
        $data = $query->fetchColumn();

        return is_string($data) ? (string)base64_decode($data, true) : '';
    }

    public function write(string $id, string $data): bool
    {
        return $this->services->db()->prepare(
            'INSERT INTO sessions (id, data, expires) VALUES (?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, expires = EXCLUDED.expires, modified = now()'
        )->execute([$id, base64_encode($data), time() + $this->lifetime]);
    }

    public function destroy(string $id): bool
    {
        return $this->services->db()->prepare('DELETE FROM sessions WHERE id = ?')->execute([$id]);
    }

    public function gc(int $max_lifetime): int|false
    {
        $delete = $this->services->db()->prepare('DELETE FROM sessions WHERE expires <= ?');
        $delete->execute([time()]);

        return $delete->rowCount();
    }

    public function validateId(string $id): bool
    {
        $query = $this->services->db()->prepare('SELECT 1 FROM sessions WHERE id = ? AND expires > ?');
        $query->execute([$id, time()]);

        return $query->fetchColumn() !== false;
    }

    public function updateTimestamp(string $id, string $data): bool
    {
        return $this->services->db()->prepare('UPDATE sessions SET expires = ?, modified = now() WHERE id = ?')
            ->execute([time() + $this->lifetime, $id]);
    }
}
