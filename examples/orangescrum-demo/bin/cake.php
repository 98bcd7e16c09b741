<?php
declare(strict_types=1);

/*
 * Console entry point (what `bin/cake` runs; FrankenPHP runs it with
 * `php-cli bin/cake.php ...`).
 */

$root = dirname(__DIR__);
if (!is_file($root . '/vendor/autoload.php')) {
    fwrite(STDERR, "vendor/autoload.php is missing: run `composer install --no-dev -a`\n");
    exit(1);
}
require $root . '/vendor/autoload.php';

$config = App\Config::load($root);
date_default_timezone_set((string)$config['App']['defaultTimezone']);
$console = new App\Console($config, STDOUT, STDERR);
exit($console->run(array_slice($argv, 1)));
