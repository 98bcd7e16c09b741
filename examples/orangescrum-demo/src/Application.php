<?php
declare(strict_types=1);

namespace App;

use PDOException;
use RedisException;
use Throwable;

/**
 * A small HTTP application that behaves like OrangeScrum where deployments
 * notice: uploads under webroot/files/, logs under logs/, sessions, an
 * installer writing config/app_local.php, a Redis queue, PostgreSQL.
 * Paths are relative to the app root (the binary runs it from wherever it
 * extracted it).  Routes that need no service never connect to one.
 */
final class Application
{
    private const UPLOAD_NAME = '/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/';

    private readonly string $root;
    private readonly Services $services;
    private readonly Log $log;

    /** @param array<string, mixed> $config what App\Config::load() returns */
    public function __construct(private readonly array $config, ?Services $services = null, ?Log $log = null)
    {
        $this->root = (string)($config['root'] ?? dirname(__DIR__));
        $this->services = $services ?? new Services($config);
        $this->log = $log ?? new Log($this->root . '/logs');
    }

    public function handle(Request $request): Response
    {
        $started = microtime(true);
        try {
            $response = $this->route($request);
        } catch (ServiceUnavailable $e) {
            $this->log->error("{$request->method} {$request->path}: {$e->getMessage()}");
            $response = Response::json(503, ['error' => $e->getMessage()]);
        } catch (Throwable $e) {
            $this->log->error(sprintf('%s %s: %s: %s', $request->method, $request->path, $e::class, $e->getMessage()));
            $response = Response::json(500, ['error' => $this->config['debug'] ? $e->getMessage() : 'Internal Server Error']);
        }
        if ($request->path !== '/healthz') { // health checks every few seconds would drown the log
            $this->log->info(sprintf('%s %s %d %d ms', $request->method, $request->path, $response->status, (microtime(true) - $started) * 1000));
        }

        return $response;
    }

    public function version(): string
    {
        return (string)($this->config['App']['version'] ?? '0.0.0');
    }

    private function route(Request $request): Response
    {
        $path = $request->path;
        if (preg_match('#^/uploads/([^/]+)$#', $path, $match) && $request->method === 'GET') {
            return $this->readUpload(rawurldecode($match[1]));
        }
        if (preg_match('#^/jobs/([0-9a-f]{1,64})$#', $path, $match) && $request->method === 'GET') {
            return $this->job($match[1]);
        }

        // The first three answer any method, as they always have.
        return match ($path) {
            '/healthz' => Response::json(200, ['status' => 'ok']),
            '/settings' => Response::json(200, ['settings' => Settings::presence()]),
            '/' => new Response(200, ['Content-Type' => 'text/html; charset=utf-8'], $this->home()),
            default => $this->routeByMethod($request),
        };
    }

    private function routeByMethod(Request $request): Response
    {
        return match ("{$request->method} {$request->path}") {
            'GET /version' => $this->versions(),
            'GET /slow' => $this->slow($request),
            'GET /runtime' => $this->runtime(),
            'POST /uploads' => $this->upload($request),
            'POST /login' => $this->login($request),
            'GET /session' => $this->session(),
            'GET /install' => $this->installed(),
            'POST /install' => $this->install(),
            'POST /jobs' => $this->enqueue($request),
            default => Response::text(404, "Not Found\n"),
        };
    }

    /** The app version and the schema version the database is at. */
    private function versions(): Response
    {
        $app = $this->version();
        if (!$this->services->hasDatabase()) {
            return Response::json(200, ['app' => $app, 'schema' => null, 'database' => 'not configured']);
        }
        $migrator = new Migrator($this->services->db(), $this->root . '/config/Migrations');

        return Response::json(200, ['app' => $app, 'schema' => [
            'version' => $migrator->current(),
            'applied' => count($migrator->applied()),
            'pending' => $migrator->pending(),
        ]]);
    }

    /** The PHP settings the deployment's php.ini makes, as PHP sees them (no secrets: limits and paths). */
    private function runtime(): Response
    {
        $names = ['memory_limit', 'upload_max_filesize', 'post_max_size', 'max_execution_time', 'expose_php',
            'display_errors', 'opcache.validate_timestamps', 'opcache.memory_consumption', 'realpath_cache_size',
            'session.save_path', 'upload_tmp_dir'];
        $ini = [];
        foreach ($names as $name) {
            $value = ini_get($name);
            $ini[$name] = $value === false ? null : $value;
        }

        return Response::json(200, ['sapi' => PHP_SAPI, 'ini' => $ini]);
    }

    /** About 200 ms of work (?ms=N, at most 10 s): for load tests during rolling updates. */
    private function slow(Request $request): Response
    {
        $ms = max(0, min(10_000, (int)($request->input('ms') ?? 200)));
        usleep($ms * 1000);

        return Response::json(200, ['slept_ms' => $ms, 'pid' => getmypid(), 'app' => $this->version()]);
    }

    /**
     * Store a file under webroot/files/: a multipart field `file`, or the raw
     * body with ?name=.  The web server then also serves it as /files/<name>.
     */
    private function upload(Request $request): Response
    {
        $file = $request->files['file'] ?? null;
        $name = $request->input('name') ?? (is_array($file) ? basename((string)$file['name']) : null);
        if ($name === null || !preg_match(self::UPLOAD_NAME, $name)) {
            return Response::json(400, ['error' => 'upload: give a file name of letters, digits, ".", "_" or "-" (field `file` or ?name=)']);
        }
        $dir = $this->root . '/webroot/files';
        if (!is_dir($dir) && !@mkdir($dir, 0775, true) && !is_dir($dir)) {
            throw new \RuntimeException('upload: cannot create webroot/files');
        }
        $target = "{$dir}/{$name}";
        if (is_array($file)) {
            if (($file['error'] ?? UPLOAD_ERR_NO_FILE) !== UPLOAD_ERR_OK || !move_uploaded_file((string)$file['tmp_name'], $target)) {
                return Response::json(400, ['error' => 'upload: the file did not arrive (error ' . ($file['error'] ?? '?') . ')']);
            }
        } elseif (file_put_contents($target, $request->body, LOCK_EX) === false) {
            throw new \RuntimeException("upload: cannot write webroot/files/{$name}");
        }
        $url = '/files/' . rawurlencode($name);
        $this->log->info("upload: stored webroot/files/{$name} (" . filesize($target) . ' bytes)');

        return Response::json(201, [
            'name' => $name,
            'size' => filesize($target),
            'sha256' => hash_file('sha256', $target),
            'url' => ($this->config['App']['fullBaseUrl'] ?? '') . $url,
        ]);
    }

    private function readUpload(string $name): Response
    {
        $path = $this->root . '/webroot/files/' . $name;
        if (!preg_match(self::UPLOAD_NAME, $name) || !is_file($path)) {
            return Response::text(404, "Not Found\n");
        }

        return new Response(200, ['Content-Type' => 'application/octet-stream', 'X-Sha256' => (string)hash_file('sha256', $path)],
            (string)file_get_contents($path));
    }

    /** A login-ish route: puts the user in a fresh session (the id is renewed, as on a real login). */
    private function login(Request $request): Response
    {
        $user = $request->input('user');
        if ($user === null || $user === '' || strlen($user) > 100) {
            return Response::json(400, ['error' => 'login: give a `user`']);
        }
        $store = Session::start($this->config, $this->services);
        session_regenerate_id(true);
        $_SESSION['user'] = $user;
        $_SESSION['logged_in_at'] = gmdate('c');
        $this->log->info("login: {$user} (session store {$store})", 'auth');

        return Response::json(200, ['user' => $user, 'store' => $store]);
    }

    private function session(): Response
    {
        $store = Session::start($this->config, $this->services);

        return Response::json(200, ['user' => $_SESSION['user'] ?? null, 'logged_in_at' => $_SESSION['logged_in_at'] ?? null, 'store' => $store]);
    }

    private function installed(): Response
    {
        $install = $this->config['Install'] ?? null;

        return Response::json(200, [
            'installed' => is_file($this->root . '/config/app_local.php'),
            'installed_at' => is_array($install) ? ($install['installedAt'] ?? null) : null,
            'installed_version' => is_array($install) ? ($install['version'] ?? null) : null,
        ]);
    }

    /**
     * The installer: writes config/app_local.php (a generated salt for when
     * SECURITY_SALT is unset, like the Community Edition's) and config/install.ini.
     * It runs once: a second call answers 409.
     */
    private function install(): Response
    {
        $local = $this->root . '/config/app_local.php';
        if (is_file($local)) {
            return Response::json(409, ['error' => 'install: already installed (config/app_local.php exists)']);
        }
        $now = gmdate('c');
        $php = "<?php\n// Written by the installer (POST /install) at {$now}.\nreturn [\n"
            . "    'Security' => ['salt' => getenv('SECURITY_SALT') ?: " . var_export(bin2hex(random_bytes(32)), true) . "],\n"
            . "    'Install' => ['installedAt' => " . var_export($now, true) . ", 'version' => " . var_export($this->version(), true) . "],\n"
            . "];\n";
        $this->writeAtomically($local, $php);
        $this->writeAtomically($this->root . '/config/install.ini', "[install]\ninstalled_at = \"{$now}\"\nversion = \"{$this->version()}\"\n");
        $this->log->info("install: wrote config/app_local.php and config/install.ini (version {$this->version()})");

        return Response::json(201, ['installed' => true, 'installed_at' => $now]);
    }

    private function enqueue(Request $request): Response
    {
        $queue = new Queue($this->config, $this->services);
        if (!$queue->configured()) {
            throw new ServiceUnavailable('queue: not configured (set QUEUE_URL or REDIS_HOST)');
        }
        $kind = $request->input('kind') ?? 'demo.ping';
        $payload = ['note' => $request->input('note')];
        try {
            $id = $queue->push($kind, $payload);
        } catch (RedisException $e) {
            throw new ServiceUnavailable('queue: ' . $e->getMessage(), 0, $e);
        }
        $this->log->info("queue: enqueued job {$id} ({$kind})");

        return Response::json(202, ['id' => $id, 'kind' => $kind]);
    }

    private function job(string $id): Response
    {
        try {
            $query = $this->services->db()->prepare('SELECT job_id, kind, processed_at, worker_pid FROM processed_jobs WHERE job_id = ?');
            $query->execute([$id]);
        } catch (PDOException $e) {
            throw new ServiceUnavailable('database: ' . Services::reason($e), 0, $e);
        }
        $row = $query->fetch();

        return Response::json(200, $row === false ? ['id' => $id, 'processed' => false]
            : ['id' => $id, 'processed' => true, 'kind' => $row['kind'], 'processed_at' => $row['processed_at'], 'worker_pid' => $row['worker_pid']]);
    }

    private function writeAtomically(string $path, string $content): void
    {
        $tmp = $path . '.tmp-' . bin2hex(random_bytes(4));
        if (@file_put_contents($tmp, $content, LOCK_EX) === false || !@rename($tmp, $path)) {
            @unlink($tmp);
            throw new \RuntimeException('cannot write ' . substr($path, strlen($this->root) + 1));
        }
    }

    private function home(): string
    {
        $name = htmlspecialchars((string)($this->config['App']['name'] ?? 'OrangeScrum'));
        $version = htmlspecialchars($this->version());

        return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            . "<title>{$name}</title><link rel=\"stylesheet\" href=\"/css/app.css\"></head>\n<body><h1>{$name}</h1>\n"
            . "<p>Version <span id=\"version\">{$version}</span> on PHP " . PHP_VERSION . "</p>\n"
            . "<p><a href=\"/healthz\">/healthz</a> <a href=\"/settings\">/settings</a></p>\n"
            . "</body></html>\n";
    }
}
