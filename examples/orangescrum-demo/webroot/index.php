<?php
declare(strict_types=1);

/*
 * Front controller.  Also the router script of PHP's built-in server
 * (`php -S ADDR -t webroot webroot/index.php`): existing static files (among
 * them uploads under webroot/files/) are left to the server.
 */

if (PHP_SAPI === 'cli-server') {
    $path = (string)parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
    $file = realpath(__DIR__ . $path);
    if ($file !== false && is_file($file) && $file !== __FILE__ && str_starts_with($file, __DIR__ . DIRECTORY_SEPARATOR)) {
        return false;
    }
}

$root = dirname(__DIR__);
if (!is_file($root . '/vendor/autoload.php')) {
    http_response_code(500);
    header('Content-Type: text/plain; charset=utf-8');
    echo "vendor/autoload.php is missing: run `composer install --no-dev -a`\n";
    exit(1);
}
require $root . '/vendor/autoload.php';

$config = App\Config::load($root);
date_default_timezone_set((string)$config['App']['defaultTimezone']);
(new App\Application($config))->handle(App\Request::fromGlobals())->send();
