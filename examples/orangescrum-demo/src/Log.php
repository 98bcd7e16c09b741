<?php
declare(strict_types=1);

namespace App;

/**
 * File logging like CakePHP's FileLog: logs/<file>.log, one line per event,
 * `2025-01-31 12:00:00 Info: message`. Warnings and worse also go to error.log.
 * Logging never breaks the caller: a log that cannot be written is reported
 * once on stderr.
 */
final class Log
{
    private const ERROR_LEVELS = ['warning', 'error', 'critical', 'alert', 'emergency'];

    private static bool $warned = false;

    public function __construct(private readonly string $dir)
    {
    }

    public function info(string $message, string $file = 'debug'): void
    {
        $this->write('info', $message, $file);
    }

    public function error(string $message, string $file = 'error'): void
    {
        $this->write('error', $message, $file);
    }

    public function write(string $level, string $message, string $file): void
    {
        $line = sprintf("%s %s: %s\n", date('Y-m-d H:i:s'), ucfirst($level), str_replace("\n", ' ', $message));
        $files = [$file];
        if (in_array($level, self::ERROR_LEVELS, true) && $file !== 'error') {
            $files[] = 'error';
        }
        foreach ($files as $name) {
            if (!is_dir($this->dir)) {
                @mkdir($this->dir, 0775, true);
            }
            if (@file_put_contents("{$this->dir}/{$name}.log", $line, FILE_APPEND | LOCK_EX) === false && !self::$warned) {
                self::$warned = true;
                error_log("orangescrum-demo: cannot write {$this->dir}/{$name}.log");
            }
        }
    }
}
