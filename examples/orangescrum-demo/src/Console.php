<?php
declare(strict_types=1);

namespace App;

/**
 * The console commands OrangeScrum's deployments run:
 * `queue worker [--max-runtime N]` (continuous) and `recurring_task` (timer).
 */
final class Console
{
    private const USAGE = <<<'TXT'
        Usage: bin/cake.php <command> [options]

        Commands:
          queue worker [--max-runtime N] [--heartbeat S]
                           process jobs; exit 0 after N seconds (0: never)
          recurring_task   run the periodic housekeeping once

        TXT;

    private bool $stop = false;

    /**
     * @param array<string, mixed> $config
     * @param resource $out
     * @param resource $err
     */
    public function __construct(private readonly array $config, private $out, private $err)
    {
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
        if ($args[0] === 'recurring_task') {
            $this->say(sprintf('recurring_task: ran at %s (app %s)', gmdate('Y-m-d\TH:i:s\Z'), $this->config['App']['version'] ?? '?'));

            return 0;
        }
        fwrite($this->err, sprintf("Unknown command `%s`.\n\n", implode(' ', $args)) . self::USAGE);

        return 1;
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

        $started = microtime(true);
        $this->say(sprintf('queue worker: started (pid %d, max runtime %s)', getmypid(), $maxRuntime > 0 ? "{$maxRuntime}s" : 'unlimited'));
        $nextBeat = $started + $heartbeat;
        while (!$this->stop) {
            $now = microtime(true);
            if ($maxRuntime > 0 && $now - $started >= $maxRuntime) {
                $this->say(sprintf('queue worker: max runtime of %ds reached, exiting', $maxRuntime));

                return 0;
            }
            if ($now >= $nextBeat) {
                $this->say(sprintf('queue worker: heartbeat %s, no jobs', gmdate('H:i:s')));
                $nextBeat += $heartbeat;
            }
            usleep(200_000);
        }
        $this->say('queue worker: stop signal received, exiting');

        return 0;
    }

    private function say(string $line): void
    {
        fwrite($this->out, $line . "\n");
        fflush($this->out);
    }
}
