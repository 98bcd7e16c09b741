<?php
declare(strict_types=1);

/*
 * Unit tests of the pure parts (settings parsing, routing without services).
 * Shaped like PHPUnit tests, but with no dependency on it (no composer
 * registry here): `php tests/TestCase/ApplicationTest.php` after `composer
 * install` runs every test* method and exits non-zero on a failure.
 * The builds must leave tests/ out of the embedded app.
 */

namespace App\Test\TestCase;

use App\Application;
use App\Config;
use App\Request;
use App\ServiceUnavailable;
use App\Session;
use App\Settings;

final class ApplicationTest
{
    public function testDatabaseUrlIsSplitAndDecoded(): void
    {
        $ds = Settings::databaseUrl('postgres://os%40user:p%2Fss@db.example:6543/orange?sslmode=require');
        self::assertSame(['host' => 'db.example', 'port' => 6543, 'username' => 'os@user', 'password' => 'p/ss',
            'database' => 'orange', 'sslmode' => 'require'], $ds);
        self::assertSame([], Settings::databaseUrl(null));
        self::assertSame(true, isset(Settings::databaseUrl('mysql://u:p@h/d')['invalid']));
    }

    public function testHealthzNeedsNoService(): void
    {
        $app = new Application(Config::load(dirname(__DIR__, 2)));
        $response = $app->handle(new Request('GET', '/healthz'));
        self::assertSame(200, $response->status);
        self::assertSame("{\"status\":\"ok\"}\n", $response->body);
        self::assertSame(404, $app->handle(new Request('GET', '/nope'))->status);
    }

    public function testSessionStores(): void
    {
        $config = ['Session' => ['defaults' => 'php'], 'CacheEngine' => 'file'];
        self::assertSame('files', Session::store($config));
        self::assertSame('redis', Session::store(['Session' => ['defaults' => 'cache'], 'CacheEngine' => 'redis']));
        self::assertSame('database', Session::store(['Session' => ['defaults' => 'database'], 'CacheEngine' => 'file']));
        try {
            Session::store(['Session' => ['defaults' => 'memcache'], 'CacheEngine' => 'file']);
            throw new \AssertionError('an unknown SESSION_HANDLER was accepted');
        } catch (ServiceUnavailable $e) {
            self::assertSame(true, str_contains($e->getMessage(), 'unknown SESSION_HANDLER memcache'));
        }
    }

    private static function assertSame(mixed $expected, mixed $actual): void
    {
        if ($expected !== $actual) {
            throw new \AssertionError('expected ' . var_export($expected, true) . ', got ' . var_export($actual, true));
        }
    }
}

if (realpath($_SERVER['SCRIPT_FILENAME'] ?? '') === __FILE__) {
    require dirname(__DIR__, 2) . '/vendor/autoload.php';
    $failed = 0;
    $test = new ApplicationTest();
    foreach (get_class_methods($test) as $method) {
        if (str_starts_with($method, 'test')) {
            try {
                $test->$method();
                echo "ok   {$method}\n";
            } catch (\Throwable $e) {
                $failed++;
                echo "FAIL {$method}: {$e->getMessage()}\n";
            }
        }
    }
    exit($failed === 0 ? 0 : 1);
}
