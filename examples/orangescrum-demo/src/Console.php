<?php
declare(strict_types=1);

namespace App;

use PDOException;
use RedisException;
use RuntimeException;

/**
 * The console commands OrangeScrum's deployments run:
 * `migrations migrate` (before a new version serves), `queue worker
 * [--max-runtime N]` (continuous) and `recurring_task` (timer).
 */
final class Console
{
    private const USAGE = <<<'TXT'
        Usage: bin/cake.php <command> [options]

        Commands:
          migrations migrate
                           apply the pending migrations of config/Migrations
          migrations status
                           list the migrations and whether each is applied
          queue worker [--max-runtime N] [--heartbeat S]
                           process jobs; exit 0 after N seconds (0: never)
          recurring_task   run the periodic housekeeping once

        TXT;

    private bool $stop = false;
    private readonly Services $services;
    private readonly Log $log;

    /**
     * @param array<string, mixed> $config what App\Config::load() returns
     * @param resource $out
     * @param resource $err
     */
    public function __construct(private readonly array $config, private $out, private $err, ?Services $services = null)
    {
        $this->services = $services ?? new Services($config);
        $this->log = new Log(($config['root'] ?? dirname(__DIR__)) . '/logs');
    }

    /** @param list<string> $args */
    public function run(array $args): int
    {
        if ($args === [] || in_array($args[0], ['-h', '--help', 'help'], true)) {
            fwrite($this->out, self::USAGE);

            return 0;
        }
        if ($args[0] === 'queue' && ($args[1] ?? null) === 'worker') {
            return $this->queueWorker(array_slice($args, 2));
        }
        if ($args[0] === 'recurring_task' && count($args) === 1) {
            return $this->recurringTask();
        }
        if ($args[0] === 'migrations' && in_array($args[1] ?? null, ['migrate', 'status'], true) && count($args) === 2) {
            return $args[1] === 'migrate' ? $this->migrate() : $this->migrationStatus();
        }
        fwrite($this->err, sprintf("Unknown command `%s`.\n\n", implode(' ', $args)) . self::USAGE);

        return 1;
    }

    private function migrator(): Migrator
    {
        return new Migrator($this->services->db(), $this->config['root'] . '/config/Migrations', (bool)$this->config['Demo']['failMigration']);
    }

    private function migrate(): int
    {
        try {
            $migrator = $this->migrator();
            $before = $migrator->current();
            $applied = $migrator->migrate(fn (string $line) => $this->say($line));
        } catch (ServiceUnavailable $e) {
            return $this->fail("migrations: {$e->getMessage()}");
        } catch (RuntimeException | PDOException $e) {
            $reason = $e instanceof PDOException ? Services::reason($e) : $e->getMessage();
            try {
                $at = isset($migrator) ? ($migrator->current() ?? 'empty') : 'unknown';
            } catch (PDOException) {
                $at = 'unknown (the database went away)';
            }

            return $this->fail("migrations: {$reason}; rolled back, the schema stays at {$at}");
        }
        $now = $migrator->current() ?? 'empty';
        if ($applied === []) {
            $this->say("migrations: nothing to migrate, the schema is at {$now}");
        } else {
            $this->say(sprintf('migrations: %d applied, the schema went from %s to %s', count($applied), $before ?? 'empty', $now));
        }
        $this->log->info("migrations: schema at {$now} (" . count($applied) . ' applied)');

        return 0;
    }

    private function migrationStatus(): int
    {
        try {
            $migrator = $this->migrator();
            $applied = $migrator->applied();
            foreach ($migrator->available() as $id => $file) {
                $this->say(sprintf('%-8s %s%s', isset($applied[$id]) ? 'up' : 'down', basename($file, '.php'),
                    isset($applied[$id]) ? "  (applied {$applied[$id]})" : ''));
            }
        } catch (ServiceUnavailable $e) {
            return $this->fail("migrations: {$e->getMessage()}");
        } catch (PDOException $e) {
            return $this->fail('migrations: ' . Services::reason($e));
        }

        return 0;
    }

    /**
     * Records the run in `recurring_task_runs`.  A database that is configured
     * but unreachable is reported and the run is skipped (exit 0): the next
     * timer run tries again.  A schema error (not migrated) fails.
     */
    private function recurringTask(): int
    {
        $version = (string)($this->config['App']['version'] ?? '?');
        $this->say(sprintf('recurring_task: ran at %s (app %s)', gmdate('Y-m-d\TH:i:s\Z'), $version));
        if (!$this->services->hasDatabase()) {
            $this->say('recurring_task: no database configured, the run is not recorded');

            return 0;
        }
        try {
            $insert = $this->services->db()->prepare('INSERT INTO recurring_task_runs (app_version, hostname) VALUES (?, ?) RETURNING id');
            $insert->execute([$version, (string)gethostname()]);
            $id = $insert->fetchColumn();
        } catch (ServiceUnavailable $e) {
            fwrite($this->err, "recurring_task: the run is not recorded: {$e->getMessage()}\n");
            $this->log->write('warning', "recurring_task: the run is not recorded: {$e->getMessage()}", 'cron');

            return 0;
        } catch (PDOException $e) {
            return $this->fail('recurring_task: cannot record the run (are the migrations applied?): ' . Services::reason($e));
        }
        $this->say("recurring_task: recorded run {$id}");
        $this->log->info("recurring_task: recorded run {$id} (app {$version})", 'cron');

        return 0;
    }

    /** @param list<string> $args */
    private function queueWorker(array $args): int
    {
        $maxRuntime = 0;
        $heartbeat = 5;
        for ($i = 0; $i < count($args); $i++) {
            [$name, $value] = str_contains($args[$i], '=') ? explode('=', $args[$i], 2) : [$args[$i], $args[++$i] ?? null];
            if (!in_array($name, ['--max-runtime', '--heartbeat'], true) || $value === null || !ctype_digit($value)) {
                fwrite($this->err, "queue worker: bad option `{$args[$i]}`\n\n" . self::USAGE);

                return 1;
            }
            $name === '--max-runtime' ? $maxRuntime = (int)$value : $heartbeat = max(1, (int)$value);
        }
        if (function_exists('pcntl_async_signals')) {
            pcntl_async_signals(true);
            foreach ([SIGTERM, SIGINT] as $signal) {
                pcntl_signal($signal, function (): void {
                    $this->stop = true;
                });
            }
        }

        $queue = new Queue($this->config, $this->services);
        $started = microtime(true);
        $this->say(sprintf('queue worker: started (pid %d, max runtime %s, queue %s)', getmypid(),
            $maxRuntime > 0 ? "{$maxRuntime}s" : 'unlimited', $queue->configured() ? 'redis' : 'not configured'));
        $nextBeat = $started + $heartbeat;
        $processed = 0;
        $retryAt = 0.0;
        while (!$this->stop) {
            $now = microtime(true);
            if ($maxRuntime > 0 && $now - $started >= $maxRuntime) {
                $this->say(sprintf('queue worker: max runtime of %ds reached, exiting', $maxRuntime));

                return 0;
            }
            if ($now >= $nextBeat) {
                $this->say(sprintf('queue worker: heartbeat %s, %d jobs processed', gmdate('H:i:s'), $processed));
                $nextBeat += $heartbeat;
            }
            if (!$queue->configured() || $now < $retryAt) {
                usleep(200_000);
                continue;
            }
            try {
                $job = $queue->reserve(1);
                if ($job !== null) {
                    $this->process($queue, $job);
                    $processed++;
                }
            } catch (ServiceUnavailable | RedisException | PDOException $e) {
                // Keep running: Redis or PostgreSQL may come back (a worker that
                // exits would only be restarted into the same error).
                $reason = $e instanceof PDOException ? Services::reason($e) : $e->getMessage();
                $this->say("queue worker: {$reason}; retrying in 5s");
                $this->log->write('warning', "queue worker: {$reason}", 'queue');
                $queue->reset();
                $retryAt = microtime(true) + 5;
            }
        }
        $this->say('queue worker: stop signal received, exiting');

        return 0;
    }

    /**
     * Record the job in `processed_jobs` (once: a redelivered job is not
     * recorded twice), then remove it from the queue.  A job that cannot be
     * recorded goes back to the queue.
     *
     * @param array{id: string, kind: string, payload: array<string, mixed>, enqueued_at: string, raw: string} $job
     */
    private function process(Queue $queue, array $job): void
    {
        try {
            $this->services->db()->prepare(
                'INSERT INTO processed_jobs (job_id, kind, payload, enqueued_at, worker_pid, app_version)
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING'
            )->execute([$job['id'], $job['kind'], json_encode($job['payload']), $job['enqueued_at'], getmypid(),
                (string)($this->config['App']['version'] ?? '?')]);
        } catch (\Throwable $e) {
            $queue->release($job['raw']);
            throw $e;
        }
        $queue->ack($job['raw']);
        $this->say("queue worker: processed job {$job['id']} ({$job['kind']})");
        $this->log->info("queue worker: processed job {$job['id']} ({$job['kind']})", 'queue');
    }

    private function fail(string $message): int
    {
        fwrite($this->err, $message . "\n");
        $this->log->error($message);

        return 1;
    }

    private function say(string $line): void
    {
        fwrite($this->out, $line . "\n");
        fflush($this->out);
    }
}
