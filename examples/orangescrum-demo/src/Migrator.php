<?php
declare(strict_types=1);

namespace App;

use Closure;
use PDO;
use PDOException;
use RuntimeException;

/**
 * Schema migrations in config/Migrations/<14-digit id>_<Name>.php, like the
 * Community Edition's (phinx-style names).  Each file returns a
 * Closure(PDO): void.  Applied ids are rows of `schema_migrations`; each
 * migration runs in its own transaction together with its row (PostgreSQL DDL
 * is transactional), so a failing one leaves the schema as it was.  An
 * advisory lock serialises migrators started at the same time.
 */
final class Migrator
{
    public const TABLE = 'schema_migrations';
    private const LOCK_KEY = 727_001_042;
    public const FAILING_ID = '99999999999999';

    public function __construct(private readonly PDO $db, private readonly string $dir, private readonly bool $failOnPurpose = false)
    {
    }

    /** @return array<string, string> id => file path, sorted by id */
    public function available(): array
    {
        $found = [];
        foreach (glob($this->dir . '/*.php') ?: [] as $file) {
            if (preg_match('/^(\d{14})_([A-Za-z0-9]+)\.php$/', basename($file), $m)) {
                $found[$m[1]] = $file;
            }
        }
        ksort($found, SORT_STRING);

        return $found;
    }

    /** @return array<string, string> id => applied_at, sorted by id */
    public function applied(): array
    {
        $this->ensureTable();
        $rows = $this->db->query('SELECT version, applied_at FROM ' . self::TABLE . ' ORDER BY version')->fetchAll();

        return array_column($rows, 'applied_at', 'version');
    }

    /** The id of the last applied migration, or null on an empty schema. */
    public function current(): ?string
    {
        $ids = array_keys($this->applied());

        return $ids === [] ? null : (string)end($ids);
    }

    /** @return list<string> ids of migrations not yet applied */
    public function pending(): array
    {
        return array_values(array_map('strval', array_diff(array_keys($this->available()), array_keys($this->applied()))));
    }

    /**
     * Apply the pending migrations in order.
     *
     * @param callable(string): void $say progress lines
     * @return list<string> the ids applied
     * @throws RuntimeException naming the migration and the reason
     */
    public function migrate(callable $say): array
    {
        $this->db->query('SELECT pg_advisory_lock(' . self::LOCK_KEY . ')');
        try {
            $this->ensureTable();
            $todo = array_diff_key($this->available(), $this->applied());
            $done = [];
            foreach ($todo as $id => $file) {
                $started = microtime(true);
                $this->apply((string)$id, $this->load($file), basename($file, '.php'));
                $done[] = (string)$id;
                $say(sprintf('migrations: applied %s (%d ms)', basename($file, '.php'), (microtime(true) - $started) * 1000));
            }
            if ($this->failOnPurpose) {
                $this->apply(self::FAILING_ID, static function (PDO $db): void {
                    $db->exec('CREATE TABLE demo_failed_migration_probe (id integer)');
                    $db->exec("DO \$\$ BEGIN RAISE EXCEPTION 'DEMO_MIGRATION_FAIL is set: this migration fails on purpose'; END \$\$");
                }, self::FAILING_ID . '_DemoMigrationFail');
            }

            return $done;
        } finally {
            $this->db->query('SELECT pg_advisory_unlock(' . self::LOCK_KEY . ')');
        }
    }

    private function apply(string $id, Closure $migration, string $name): void
    {
        $this->db->beginTransaction();
        try {
            $migration($this->db);
            $insert = $this->db->prepare('INSERT INTO ' . self::TABLE . ' (version, migration_name) VALUES (?, ?)');
            $insert->execute([$id, $name]);
            $this->db->commit();
        } catch (\Throwable $e) {
            if ($this->db->inTransaction()) {
                $this->db->rollBack();
            }
            $reason = $e instanceof PDOException ? Services::reason($e) : $e->getMessage();
            throw new RuntimeException("migration {$name} failed: {$reason}", 0, $e);
        }
    }

    private function load(string $file): Closure
    {
        $migration = require $file;
        if (!$migration instanceof Closure) {
            throw new RuntimeException(sprintf('migration %s must return a Closure(PDO): void', basename($file)));
        }

        return $migration;
    }

    private function ensureTable(): void
    {
        $this->db->exec('CREATE TABLE IF NOT EXISTS ' . self::TABLE . ' (
            version varchar(14) PRIMARY KEY,
            migration_name varchar(100) NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )');
    }
}
