<?php
declare(strict_types=1);

namespace App;

/**
 * Loads the configuration like OrangeScrum's bootstrap: config/app.php, then
 * the installer's config/app_local.php (when present) merged over it.
 */
final class Config
{
    /** @return array<string, mixed> */
    public static function load(string $root): array
    {
        $config = require $root . '/config/app.php';
        $local = $root . '/config/app_local.php';
        if (is_file($local)) {
            $overrides = require $local;
            if (is_array($overrides)) {
                $config = array_replace_recursive($config, $overrides);
            }
        }
        $config['root'] = $root;

        return $config;
    }
}
