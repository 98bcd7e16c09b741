#!/bin/sh
# validate-env.sh - the one checker of OrangeScrum's settings.
#
# The Docker entrypoint, run-native.sh, the systemd units (ExecStartPre), the
# package postinst and `invoke check --env-file` all run this same script, so a
# file that passes here passes everywhere.
#
# usage: validate-env.sh [-q|--quiet] [FILE]        check FILE (default: ./.env)
#        validate-env.sh [-q|--quiet] --environ     check the process environment
#        validate-env.sh [-q|--quiet] --exec FILE -- COMMAND [ARG...]
#                                         check FILE, then run COMMAND with its values
#        validate-env.sh --secret-keys   print the settings that accept KEY_FILE
#        --secret-files-elsewhere (with FILE or --environ): the KEY_FILE paths
#                  are paths in the container, not here: KEY counts as set, the
#                  file is not read (invoke check/deploy, on the build machine)
#        validate-env.sh -h|--help
# exit:  0 valid (warnings allowed), 1 invalid, 2 unreadable file or usage error
#
# Output (stdout): one "error: ..." or "warning: ..." line per problem, naming
# the key (or the line number) and the rule, then a summary line and, when
# invalid, one "hint: ..." line. It never prints a value, not even part of one:
# these files hold passwords, and the output ends up in journals and CI logs.
#
# The format: the same file is read by systemd (EnvironmentFile=), by Docker
# Compose (env_file:) and by python-dotenv (invoke --env-file). They disagree
# about quotes, backslashes, comments, `$` and `export`, so this script accepts
# only lines that all three read as the same KEY and the same value, and says
# which reader would read a refused line differently:
#   KEY=VALUE      KEY is [A-Za-z_][A-Za-z0-9_]*; blanks around '=' and at the
#                  ends of the line are ignored; the value has no '\', no '$'
#                  and no '#' after a blank
#   KEY='VALUE'    anything but a quote; no '\' before '\' or the closing quote
#   KEY="VALUE"    anything but '"', '\' and '$'; \" and \\ are the escapes
#   # comment      on a line of its own, not ending with '\'
# Each line is one setting (no continuation, no multi-line values), the file is
# UTF-8 without control characters (tab allowed), and a key defined twice
# takes its last value. docs/CONFIGURATION.md says why, rule by rule.
#
# Secrets as files: for each key of SECRET_KEYS, KEY_FILE=/path may stand for
# KEY (in the file and in the environment): the file's content, one trailing
# newline stripped, is checked by KEY's rules, and --exec exports it as KEY.
# KEY and KEY_FILE both set is an error; so is a file that cannot be read
# (named by its key, never by its content).
#
# Safety: the file is parsed here, line by line, as text. It is never sourced,
# eval'ed or executed, so `X=$(cmd)` or backticks in it are just characters.
# Values never reach the argument list of another program either (they would
# show in `ps`): only the shell's builtins see them, and `tr` on a pipe;
# --exec exports them from this shell and execs COMMAND.
#
# Speed: it runs at every service start, so the parse loop forks nothing and
# every step is linear in the line (dash's ${v#*x} and ${v#"$long"} cost time
# quadratic in the length: they are used only on short strings, and lines are
# capped at MAX_LINE bytes). Lists are walked with `for` over IFS-split words,
# never by cutting a long string item by item.
set -euf

# The caller's locale goes to COMMAND (--exec); the checks run in bytes.
lc_all_set=${LC_ALL+set}
lc_all_value=${LC_ALL-}
LC_ALL=C
export LC_ALL

REQUIRED='DB_HOST DB_PORT DB_USERNAME DB_PASSWORD DB_NAME SECURITY_SALT FULL_BASE_URL'
# The settings that hold a secret (passwords, the salt, keys, URLs that carry
# a password). Each also accepts KEY_FILE=/path instead (Docker and Swarm
# secrets, the convention of the official database images): the content of
# the file, one trailing newline stripped, is the value. This is the one list:
# the Docker entrypoint asks for it with --secret-keys.
# (One line each: these lists are matched as " $LIST " by case patterns.)
SECRET_KEYS='DB_PASSWORD SECURITY_SALT DATABASE_URL REDIS_PASSWORD QUEUE_URL STORAGE_ACCESS_KEY STORAGE_SECRET_KEY SMTP_PASSWORD EMAIL_API_KEY EMAIL_TRANSPORT_DEFAULT_URL'
# Every variable OrangeScrum reads (docs/CONFIGURATION.md lists them, the
# Community Edition's keys are tests/unit/data/ce_env_keys.txt), and the
# deployment's own: --environ checks these and ignores the rest of the
# environment, which belongs to other programs.
KNOWN="$REQUIRED DEBUG
APP_NAME APP_ENCODING APP_DEFAULT_LOCALE APP_DEFAULT_TIMEZONE APP_TRUSTED_PROXIES
V2_BASE_URL LOGOUT_CHAIN_URL EDITOR_DOCSERVER_ORIGIN CRITICAL_PATH_ENABLED CRITICAL_PATH_BASE_URL
DATABASE_URL DATABASE_TEST_URL DB_LOG
CACHE_ENGINE CACHE_PREFIX CACHE_DEFAULT_URL CACHE_CAKECORE_URL CACHE_CAKEMODEL_URL CACHE_CAKEROUTES_URL CACHE_LANGUAGES_URL
SESSION_HANDLER SESSION_COOKIE_NAME SESSION_COOKIE_SECURE SESSION_COOKIE_SAMESITE SESSION_COOKIE_DOMAIN CSRF_COOKIE_NAME
LOG_DEBUG_URL LOG_ERROR_URL LOG_QUERIES_URL LOG_AUTH_URL LOG_CRON_URL LOG_GITSYNC_URL LOG_ATTENDANCE_LEAVE_URL
LOG_DUMMYDATA_URL LOG_EMAIL_URL LOG_CRITICAL_PATH_URL LOG_TASK_ERROR_URL
REDIS_HOST REDIS_PORT REDIS_PASSWORD REDIS_DATABASE REDIS_PREFIX REDIS_TIMEOUT REDIS_PERSISTENT
MEMCACHED_SERVER MEMCACHED_PORT MEMCACHED_PREFIX MEMCACHED_LOG
QUEUE_URL QUEUE_WORKER_MAX_RUNTIME QUEUE_WORKER_SLEEP
STORAGE_ENDPOINT STORAGE_ACCESS_KEY STORAGE_SECRET_KEY STORAGE_BUCKET STORAGE_REGION STORAGE_PATH_STYLE
EMAIL_TRANSPORT EMAIL_TRANSPORT_DEFAULT_URL EMAIL_API_KEY
SMTP_HOST SMTP_PORT SMTP_USERNAME SMTP_PASSWORD SMTP_TLS FROM_EMAIL NOTIFY_EMAIL SSL_CERT_FILE
HTTPS HTTP_HOST HTTP_X_FORWARDED_PROTO SCRIPT_NAME OSCB_REPLICAS"
for key in $SECRET_KEYS; do KNOWN="$KNOWN ${key}_FILE"; done
# Keys whose empty value the application does not read as its default
# (CakePHP's env() returns '' for a variable that is set but empty).
EMPTY_NOT_DEFAULT='APP_ENCODING APP_DEFAULT_LOCALE APP_DEFAULT_TIMEZONE SESSION_COOKIE_NAME SESSION_COOKIE_SECURE CSRF_COOKIE_NAME CRITICAL_PATH_ENABLED REDIS_TIMEOUT MEMCACHED_SERVER MEMCACHED_PORT MEMCACHED_LOG EMAIL_TRANSPORT'
MAX_LINE=8192
DOCS=docs/CONFIGURATION.md

nl='
'
cr=$(printf '\r')
ifs_default=$IFS

# --- byte sets ------------------------------------------------------------------
# UTF-8 is checked byte by byte with case patterns (no iconv in small images).
# The sets are made once by printf (one fork); ':' separates them.
# shellcheck disable=SC2059 # the format is the point: octal escapes
sets=$(
	f='\001\002\003\004\005\006\007\010\013\014\016\017\020\021\022\023\024\025\026\027\030\031\032\033\034\035\036\037\177:'
	f=$f'\200\201\202\203\204\205\206\207\210\211\212\213\214\215\216\217\220\221\222\223\224\225\226\227\230\231\232\233\234\235\236\237'
	f=$f'\240\241\242\243\244\245\246\247\250\251\252\253\254\255\256\257\260\261\262\263\264\265\266\267\270\271\272\273\274\275\276\277:'
	f=$f'\200\201\202\203\204\205\206\207\210\211\212\213\214\215\216\217\220\221\222\223\224\225\226\227\230\231\232\233\234\235\236\237:'
	f=$f'\200\201\202\203\204\205\206\207\210\211\212\213\214\215\216\217:'
	f=$f'\240\241\242\243\244\245\246\247\250\251\252\253\254\255\256\257\260\261\262\263\264\265\266\267\270\271\272\273\274\275\276\277:'
	f=$f'\220\221\222\223\224\225\226\227\230\231\232\233\234\235\236\237\240\241\242\243\244\245\246\247\250\251\252\253\254\255\256\257'
	f=$f'\260\261\262\263\264\265\266\267\270\271\272\273\274\275\276\277:'
	f=$f'\302\303\304\305\306\307\310\311\312\313\314\315\316\317\320\321\322\323\324\325\326\327\330\331\332\333\334\335\336\337:'
	f=$f'\341\342\343\344\345\346\347\350\351\352\353\354\356\357:\361\362\363:'
	f=$f'\340:\355:\360:\364:\302:\341:\342:\343:'
	f=$f'\220\221\222\223\224\225\226\227\230\231\232\233\234\235\236\237\240\241\242\243\244\245\246\247\250\251\252\253\254\255\256\257:'
	f=$f'\217\237\257\277:\276\277:\200\201\202\203\204\205\206\207\210\211\212\250\251\257:'
	f=$f'\267:\277:\200:\201:\232:\237:\240:\357\273\277:\357'
	printf "$f"
)
load_sets() { # (a function: its set -- leaves the script's arguments alone)
	IFS=:
	# shellcheck disable=SC2086 # split on ':'
	set -- $sets
	IFS=$ifs_default
	CTL=$1 U_C=$2 U_80_9F=$3 U_80_8F=$4 U_A0_BF=$5 U_90_BF=$6 U_L2=$7 U_L3=$8 U_L4=$9
	shift 9
	U_E0=$1 U_ED=$2 U_F0=$3 U_F4=$4 U_C2=$5 U_E1=$6 U_E2=$7 U_E3=$8
	shift 8
	U_NC3=$1 U_NC4=$2 U_BE_BF=$3 U_SP3=$4 U_B7=$5 U_BF=$6 U_80=$7 U_81=$8 U_9A=$9
	shift 9
	U_9F=$1 U_A0=$2 BOM=$3 U_EF=$4
}
load_sets
# Every ASCII byte but NUL: IFS that leaves only the runs of non-ASCII bytes.
ASCII="$CTL	$nl$cr"' !"#$%&()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\]^_`abcdefghijklmnopqrstuvwxyz{|}~'"'"

usage() {
	cat <<'EOF'
usage: validate-env.sh [-q|--quiet] [FILE]       check FILE (default: ./.env)
       validate-env.sh [-q|--quiet] --environ    check the process environment
       validate-env.sh [-q|--quiet] --exec FILE -- COMMAND [ARG...]
                                          check FILE; if valid, run COMMAND with
                                          FILE's values in its environment
       validate-env.sh --secret-keys             print the settings that accept KEY_FILE
  --secret-files-elsewhere   KEY_FILE paths are paths in a container: count KEY
                             as set without reading the file
       validate-env.sh -h|--help

Checks OrangeScrum's settings without running anything from the file and
without printing any value. Prints one line per problem, then a summary.
  -q, --quiet   print nothing when the settings are valid (warnings still print)
Exit status: 0 valid (warnings allowed), 1 invalid, 2 unreadable file or usage error.

FILE holds KEY=VALUE lines that systemd, Docker Compose and python-dotenv read
alike: KEY=VALUE (no '\', '$' or ' #' in VALUE), KEY='VALUE', KEY="VALUE"
(\" and \\ only, no '$'), '#' comments on their own lines, UTF-8, no
'export', no line continuation. A secret setting may be given as
KEY_FILE=/path instead: the file's content (one trailing newline stripped) is
the value. See docs/CONFIGURATION.md.
EOF
}

usage_error() {
	printf 'validate-env: %s\n' "$1" >&2
	printf 'usage: validate-env.sh [-q|--quiet] [--environ | FILE]  (-h for help)\n' >&2
	exit 2
}

# --- command line ------------------------------------------------------------

quiet=0
environ=0
files_elsewhere=0
exec_mode=0
file=
have_file=0
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--secret-keys)
		# shellcheck disable=SC2086 # one name per line
		printf '%s\n' $SECRET_KEYS
		exit 0
		;;
	-q | --quiet) quiet=1 ;;
	--environ) environ=1 ;;
	--secret-files-elsewhere) files_elsewhere=1 ;;
	--exec)
		# --exec FILE -- COMMAND [ARG...]: validate FILE, then run COMMAND with
		# FILE's values exported by this shell (never on a command line).
		[ $# -ge 2 ] || usage_error '--exec needs FILE -- COMMAND'
		file=$2 have_file=1 exec_mode=1
		shift 2
		[ "${1-}" = -- ] && [ $# -ge 2 ] || usage_error '--exec FILE must be followed by -- COMMAND [ARG...]'
		shift
		break
		;;
	--) shift; break ;;
	-?*) usage_error "unknown option: $1" ;;
	*)
		[ "$have_file" = 0 ] || usage_error 'more than one FILE given'
		file=$1 have_file=1
		;;
	esac
	shift
done
if [ "$exec_mode" = 0 ] && [ $# -gt 0 ]; then
	if [ "$have_file" = 1 ] || [ $# -gt 1 ]; then
		usage_error 'more than one FILE given'
	fi
	file=$1 have_file=1
fi
if [ "$environ" = 1 ] && [ "$have_file" = 1 ]; then
	usage_error '--environ and FILE exclude each other'
fi
if [ "$files_elsewhere" = 1 ] && [ "$exec_mode" = 1 ]; then
	usage_error '--secret-files-elsewhere and --exec exclude each other (--exec exports the files it reads)'
fi
[ "$have_file" = 1 ] || file=.env
[ -n "$file" ] || usage_error 'FILE is empty'

# --- the report --------------------------------------------------------------
# Printed as found: a value is checked only once it is known to be the last
# definition of its key, so no message ever has to be taken back.

errors=0
warnings=0
note() { # LEVEL TEXT
	case $1 in
	error) errors=$((errors + 1)) ;;
	*) warnings=$((warnings + 1)) ;;
	esac
	printf '%s: %s\n' "$1" "$2"
}

# --- small string helpers (no forks; results in $trimmed) --------------------

ltrim() { trimmed=$1; trimmed=${trimmed#"${trimmed%%[![:blank:]]*}"}; }
rtrim() { trimmed=$1; trimmed=${trimmed%"${trimmed##*[![:blank:]]}"}; }

# Is there a byte >= 0x80? ([:print:] and [:cntrl:] cover ASCII in the C locale.)
has_high() {
	case $1 in *[![:print:][:cntrl:]]*) return 0 ;; esac
	return 1
}

# scan_utf8 TEXT: checks the non-ASCII bytes of TEXT. Sets $utf8 to ok,
# invalid (not UTF-8, an overlong form, a surrogate), control (U+0080-U+009F)
# or nonchar (U+FDD0-U+FDEF, U+xFFFE, U+xFFFF: systemd refuses them); $uspace
# to 1 when TEXT has a Unicode space (U+00A0, U+1680, U+2000-U+200A, U+2028,
# U+2029, U+202F, U+205F, U+3000), and $ncont to its number of continuation
# bytes (characters = bytes - ncont). Only the runs of non-ASCII bytes are
# walked: IFS=$ASCII splits TEXT into them in one linear step.
scan_utf8() {
	utf8=ok uspace=0 ncont=0
	IFS=$ASCII
	# shellcheck disable=SC2086 # split into the runs of non-ASCII bytes
	set -- $1
	IFS=$ifs_default
	for run do
		while [ -n "$run" ]; do
			case $run in
			[$U_L2][$U_C]*)
				case $run in
				"$U_C2"[$U_80_9F]*) utf8=control; return 0 ;;
				"$U_C2$U_A0"*) uspace=1 ;;
				esac
				run=${run#??} ncont=$((ncont + 1))
				;;
			"$U_E0"[$U_A0_BF][$U_C]* | [$U_L3][$U_C][$U_C]* | "$U_ED"[$U_80_9F][$U_C]*)
				case $run in
				"$U_EF$U_B7"[$U_NC3]* | "$U_EF$U_BF"[$U_BE_BF]*) utf8=nonchar; return 0 ;;
				"$U_E1$U_9A$U_80"* | "$U_E2$U_80"[$U_SP3]* | "$U_E2$U_81$U_9F"* | "$U_E3$U_80$U_80"*) uspace=1 ;;
				esac
				run=${run#???} ncont=$((ncont + 2))
				;;
			"$U_F0"[$U_90_BF][$U_C][$U_C]* | [$U_L4][$U_C][$U_C][$U_C]* | "$U_F4"[$U_80_8F][$U_C][$U_C]*)
				case $run in
				?[$U_NC4]"$U_BF"[$U_BE_BF]*) utf8=nonchar; return 0 ;;
				esac
				run=${run#????} ncont=$((ncont + 3))
				;;
			*) utf8=invalid; return 0 ;;
			esac
		done
	done
}

# nchars VALUE: its length in characters (UTF-8), in $nchars.
nchars() {
	nchars=${#1}
	if has_high "$1"; then
		scan_utf8 "$1"
		nchars=$((nchars - ncont))
	fi
}

# --- the rules ---------------------------------------------------------------

is_placeholder() { # VALUE: the template's marker, in any case
	case $1 in
	*[Cc][Hh][Aa][Nn][Gg][Ee][Mm][Ee]* | *[Cc][Hh][Aa][Nn][Gg][Ee]_[Mm][Ee]*) return 0 ;;
	esac
	return 1
}

# Secrets and the salt also reject the other usual template words.
is_secret_placeholder() { # VALUE
	case $1 in
	*[Yy][Oo][Uu][Rr]_* | *[Ee][Xx][Aa][Mm][Pp][Ll][Ee]* | __[Ss][Aa][Ll][Tt]__) return 0 ;;
	esac
	is_placeholder "$1"
}

# Defaults shipped by PostgreSQL, MinIO, tutorials... Compared in lower case.
# The only fork per secret: tr reads the value from a pipe, never from argv.
is_denied() { # VALUE
	lower=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')
	case $lower in
	changeme | change_me | password | passw0rd | secret | orangescrum | admin | \
		root | postgres | minioadmin | 123456789012) return 0 ;;
	esac
	return 1
}

check_secret() { # KEY VALUE
	if is_secret_placeholder "$2"; then
		note error "$1: is still a placeholder from .env.example; set a real secret"
		return 0
	fi
	if is_denied "$2"; then
		note error "$1: is a well-known default password; generate one with: openssl rand -base64 24"
		return 0
	fi
	# A provider issues the SMTP password (Gmail app passwords are 16 lower
	# case letters): a weak one is reported but must not stop the service.
	level=error
	[ "$1" != SMTP_PASSWORD ] || level=warning
	nchars "$2"
	if [ "$nchars" -lt 12 ]; then
		note "$level" "$1: must be at least 12 characters long"
		return 0
	fi
	classes=0
	case $2 in *[a-z]*) classes=$((classes + 1)) ;; esac
	case $2 in *[A-Z]*) classes=$((classes + 1)) ;; esac
	case $2 in *[0-9]*) classes=$((classes + 1)) ;; esac
	case $2 in *[!A-Za-z0-9]*) classes=$((classes + 1)) ;; esac
	# 24+ random characters are strong even from two classes: this lets the
	# output of `openssl rand -hex 16` pass, which the 3-class rule would refuse.
	if [ "$nchars" -ge 24 ]; then need=2; else need=3; fi
	if [ "$classes" -lt "$need" ]; then
		if [ "$need" = 3 ]; then
			note "$level" "$1: must mix at least 3 of: lower case, upper case, digits, other characters (or be 24+ characters long)"
		else
			note "$level" "$1: must mix at least 2 of: lower case, upper case, digits, other characters"
		fi
	fi
}

check_salt() { # VALUE
	nchars "$1"
	if is_secret_placeholder "$1" || is_denied "$1"; then
		note error 'SECURITY_SALT: is still a placeholder from .env.example; generate one with: openssl rand -hex 32'
	elif [ "$nchars" -lt 32 ]; then
		note error 'SECURITY_SALT: must be at least 32 characters long; generate one with: openssl rand -hex 32'
	fi
}

check_port() { # KEY VALUE
	case $2 in
	tcp://* | udp://*)
		# Kubernetes service links and legacy Docker links set <NAME>_PORT
		# to an address; OrangeScrum would read that as its port.
		note error "$1: must be a port number between 1 and 65535 (it holds a tcp:// address, as Kubernetes service links set; set $1 explicitly)"
		return 0
		;;
	*[!0-9]*)
		note error "$1: must be a port number between 1 and 65535"
		return 0
		;;
	esac
	digits=${2#"${2%%[!0]*}"} # leading zeros would read as octal elsewhere
	if [ -z "$digits" ] || [ ${#digits} -gt 5 ] || [ "$digits" -gt 65535 ]; then
		note error "$1: must be a port number between 1 and 65535"
	fi
}

check_count() { # KEY VALUE: a non-negative integer (seconds, a database number)
	case $2 in
	*[!0-9]*) note error "$1: must be a whole number (0 or more)" ;;
	esac
}

# url_host URL: the host of an http:// or https:// URL in $host (empty when
# it has another scheme, no host or a blank), the text after the scheme in $rest.
url_host() {
	case $1 in
	http://*) rest=${1#http://} ;;
	https://*) rest=${1#https://} ;;
	*) rest= ;;
	esac
	host=${rest%%[/?#]*} # authority
	host=${host##*@}     # without user:password@
	case $host in
	\[*\]*) ;;                 # [IPv6]:port
	*) host=${host%%:*} ;; # without :port
	esac
	case $1 in
	*[[:space:]]*) host= ;;
	esac
}

base_host='' fullbase_https=0
check_url() { # VALUE
	url_host "$1"
	base_host=$host
	case $1 in https://*) fullbase_https=1 ;; esac
	if [ -z "$host" ]; then
		note error 'FULL_BASE_URL: must start with http:// or https:// and name a host'
		return 0
	fi
	case $1 in
	http://*) note warning 'FULL_BASE_URL: uses http://; serve OrangeScrum over https:// in production' ;;
	esac
	case $rest in
	*/) note warning "FULL_BASE_URL: ends with '/'; remove it, or generated links get a double slash" ;;
	esac
}

check_email() { # KEY VALUE
	case $2 in
	*[[:space:]\<\>\"]* | *@*@* | @* | *@ | *@.* | *. | *..*) ok=0 ;;
	?*@?*) ok=1 ;;
	*) ok=0 ;;
	esac
	if [ "$ok" = 0 ]; then
		note error "$1: must look like an e-mail address (local@domain)"
	fi
}

# The spellings of a boolean that every reader takes alike. PHP's
# filter_var(..., FILTER_VALIDATE_BOOLEAN), which the application uses, also
# reads yes/on/no/off, and reads every other value (a typo) as false.
check_bool() { # KEY VALUE
	case $2 in
	[Tt][Rr][Uu][Ee] | [Ff][Aa][Ll][Ss][Ee] | 1 | 0) ;;
	*) note error "$1: must be true, false, 1 or 0 (the application reads any other value as false)" ;;
	esac
}

check_http() { # KEY VALUE: an http:// or https:// URL with a host
	url_host "$2"
	[ -n "$host" ] || note error "$1: must start with http:// or https:// and name a host"
}

# check_scheme KEY VALUE SCHEMES HINT: a CakePHP DSN (SCHEME://...) whose
# scheme is one of SCHEMES (CakePHP picks the engine class by the scheme).
check_scheme() {
	scheme=${2%%://*}
	case $scheme in
	"$2" | '' | *[!a-z0-9+.-]*) scheme= ;;
	esac
	case " $3 " in
	*" $scheme "*) [ -n "$scheme" ] || note error "$1: must start with SCHEME:// where SCHEME is one of: $3 ($4)" ;;
	*) note error "$1: must start with SCHEME:// where SCHEME is one of: $3 ($4)" ;;
	esac
	case $2 in
	*[[:space:]]*) note error "$1: must not contain blanks (URL-encode them: %20)" ;;
	esac
}

check_database_url() { # VALUE
	check_scheme DATABASE_URL "$1" postgres 'postgres://USER:PASSWORD@HOST:5432/NAME; the binary has only the PostgreSQL driver'
	case $1 in
	postgres://*)
		rest=${1#postgres://}
		host=${rest%%[/?#]*}
		host=${host##*@}
		host=${host%%:*}
		[ -n "$host" ] || note error 'DATABASE_URL: must name a host (postgres://USER:PASSWORD@HOST:5432/NAME)'
		;;
	esac
}

check_cookie_name() { # KEY VALUE
	case $2 in
	*[!A-Za-z0-9_-]*) ok=0 ;;
	*[A-Za-z]*) ok=1 ;;
	*) ok=0 ;;
	esac
	[ "$ok" = 1 ] || note error "$1: must be a cookie name: letters, digits, '_' and '-', with at least one letter"
}

cookie_domain=
check_cookie_domain() { # VALUE
	case $1 in
	.* | *. | *..* | *[!A-Za-z0-9.-]*)
		note error 'SESSION_COOKIE_DOMAIN: must be a host name such as tasks.example.com (no scheme, port, path or leading dot)'
		;;
	*) cookie_domain=$1 ;;
	esac
}

check_trusted_proxies() { # VALUE: *, or a comma-separated list of addresses
	[ "$1" != '*' ] || return 0
	IFS=,
	for item in $1; do
		IFS=$ifs_default
		ltrim "$item"
		rtrim "$trimmed"
		case $trimmed in
		*/*)
			note error 'APP_TRUSTED_PROXIES: the application compares each entry with the client address exactly, so a range (/) never matches; list the proxy addresses, or *'
			return 0
			;;
		*[!0-9A-Fa-f.:]*)
			note error 'APP_TRUSTED_PROXIES: must be * or a comma-separated list of IP addresses (host names never match the client address)'
			return 0
			;;
		esac
	done
	IFS=$ifs_default
}

# Values a session handler keeps where every replica sees them.
session_handler='' cache_engine='' cache_url_scheme='' email_transport='' samesite='' cookie_secure='' replicas=''
have_api_key=0 secrets_direct=' ' secrets_from_file=' ' reading_secret_file=0 file_exports='' file_keys=''

# KEY_FILE=PATH: KEY's value is PATH's content, one trailing newline stripped.
check_secret_file() { # KEY PATH
	secrets_from_file="$secrets_from_file$1 "
	known "$1" # whatever happens: no "is required but not set" as well
	if [ "$files_elsewhere" = 1 ]; then
		[ "$1" != EMAIL_API_KEY ] || have_api_key=1
		return 0
	fi
	if [ ! -f "$2" ] || [ ! -r "$2" ] || ! (: <"$2") 2>/dev/null; then
		note error "${1}_FILE: cannot read the file it names (missing, not a regular file, or no read permission for this user); fix the path or the file's owner and mode"
		[ "$1" != EMAIL_API_KEY ] || have_api_key=1 # named: one error is enough
		return 0
	fi
	content='' count=0
	while IFS= read -r part || [ -n "$part" ]; do
		count=$((count + 1))
		[ "$count" -le 2 ] || break
		if [ "$count" = 1 ]; then content=$part; else content=$content$nl$part; fi
	done <"$2"
	case $content in
	*"$nl"*) note error "${1}_FILE: the file has more than one line; a secret file holds the value on one line (a trailing newline is ignored)"; return 0 ;;
	*"$cr") note error "${1}_FILE: the file ends with a carriage return (Windows line ending); convert it with: dos2unix"; return 0 ;;
	esac
	reading_secret_file=1
	check_pair "$1" "$content"
	reading_secret_file=0
	if [ "$exec_mode" = 1 ]; then
		file_exports="$file_exports$1=$content$nl" file_keys="$file_keys${1}_FILE$nl"
	fi
}

smtp_host_set=0
smtp_port_set=0

# One KEY=VALUE: the last definition in the file, or from the environment.
check_pair() { # KEY VALUE
	case $1 in
	SMTP_HOST) if [ -n "$2" ]; then smtp_host_set=1; fi ;;
	SMTP_PORT) if [ -n "$2" ]; then smtp_port_set=1; fi ;;
	*_FILE)
		case " $SECRET_KEYS " in
		*" ${1%_FILE} "*)
			[ -z "$2" ] || check_secret_file "${1%_FILE}" "$2"
			return 0
			;;
		esac
		;;
	esac
	if [ -z "$2" ]; then # empty means unset: only required keys care
		case " $REQUIRED " in
		*" $1 "*) note error "$1: is required but empty" ;;
		esac
		case " $EMPTY_NOT_DEFAULT " in
		*" $1 "*) note warning "$1: is empty, which the application reads as an empty value, not as its default; remove the line (or comment it out) to get the default" ;;
		esac
		return 0
	fi
	if [ "$reading_secret_file" = 0 ]; then
		case " $SECRET_KEYS " in
		*" $1 "*) secrets_direct="$secrets_direct$1 " ;;
		esac
	fi
	case $1 in
	SECURITY_SALT) check_salt "$2"; return 0 ;;
	DB_PASSWORD | STORAGE_SECRET_KEY | REDIS_PASSWORD | SMTP_PASSWORD) check_secret "$1" "$2"; return 0 ;;
	EMAIL_API_KEY) have_api_key=1 ;;
	esac
	if is_placeholder "$2"; then
		note error "$1: is still a placeholder from .env.example; set a real value"
		return 0
	fi
	case $1 in
	*_PORT) check_port "$1" "$2" ;;
	FULL_BASE_URL) check_url "$2" ;;
	DEBUG)
		case $2 in
		[Tt][Rr][Uu][Ee] | 1) note warning 'DEBUG: is true; never run production with DEBUG enabled' ;;
		[Ff][Aa][Ll][Ss][Ee] | 0) ;;
		*) note error 'DEBUG: must be true, false, 1 or 0' ;;
		esac
		;;
	STORAGE_PATH_STYLE)
		case $2 in
		[Tt][Rr][Uu][Ee] | [Ff][Aa][Ll][Ss][Ee]) ;;
		*) note error 'STORAGE_PATH_STYLE: must be true or false' ;;
		esac
		;;
	FROM_EMAIL | NOTIFY_EMAIL) check_email "$1" "$2" ;;
	QUEUE_WORKER_MAX_RUNTIME | QUEUE_WORKER_SLEEP | REDIS_DATABASE | REDIS_TIMEOUT) check_count "$1" "$2" ;;
	DB_LOG | REDIS_PERSISTENT | MEMCACHED_LOG | CRITICAL_PATH_ENABLED | SMTP_TLS) check_bool "$1" "$2" ;;
	SESSION_COOKIE_SECURE) check_bool "$1" "$2"; cookie_secure=$2 ;;
	DATABASE_URL | DATABASE_TEST_URL | QUEUE_URL | EMAIL_TRANSPORT_DEFAULT_URL | \
		CACHE_DEFAULT_URL | CACHE_CAKECORE_URL | CACHE_CAKEMODEL_URL | CACHE_CAKEROUTES_URL | CACHE_LANGUAGES_URL | \
		LOG_DEBUG_URL | LOG_ERROR_URL | LOG_QUERIES_URL | LOG_AUTH_URL | LOG_CRON_URL | LOG_GITSYNC_URL | \
		LOG_ATTENDANCE_LEAVE_URL | LOG_DUMMYDATA_URL | LOG_EMAIL_URL | LOG_CRITICAL_PATH_URL | LOG_TASK_ERROR_URL | \
		V2_BASE_URL | LOGOUT_CHAIN_URL | CRITICAL_PATH_BASE_URL | STORAGE_ENDPOINT | EDITOR_DOCSERVER_ORIGIN)
		check_url_setting "$1" "$2" # (the URL settings by name: another *_URL is not OrangeScrum's)
		;;
	CACHE_ENGINE)
		case $2 in
		file | redis | memcached) cache_engine=$2 ;;
		*) note error 'CACHE_ENGINE: must be file, redis or memcached (lower case; the application silently uses file for any other value)' ;;
		esac
		;;
	SESSION_HANDLER)
		case $2 in
		php | cake | database | cache) session_handler=$2 ;;
		*) note error 'SESSION_HANDLER: must be php, cake, database or cache (CakePHP ignores any other value and keeps PHP file sessions)' ;;
		esac
		;;
	EMAIL_TRANSPORT)
		case $2 in
		smtp | sendgrid | default) email_transport=$2 ;;
		*) note error 'EMAIL_TRANSPORT: must be smtp, sendgrid or default (the name of a configured transport)' ;;
		esac
		;;
	SESSION_COOKIE_SAMESITE)
		case $2 in
		[Ll][Aa][Xx] | [Ss][Tt][Rr][Ii][Cc][Tt]) ;;
		[Nn][Oo][Nn][Ee]) samesite=none ;;
		*) note error 'SESSION_COOKIE_SAMESITE: must be Lax, Strict or None' ;;
		esac
		;;
	SESSION_COOKIE_NAME | CSRF_COOKIE_NAME) check_cookie_name "$1" "$2" ;;
	SESSION_COOKIE_DOMAIN) check_cookie_domain "$2" ;;
	APP_TRUSTED_PROXIES) check_trusted_proxies "$2" ;;
	APP_DEFAULT_TIMEZONE)
		case $2 in
		*[!A-Za-z0-9_+/-]* | /* | */ | *..*) note error 'APP_DEFAULT_TIMEZONE: must be a time zone name such as UTC or Europe/Berlin' ;;
		esac
		;;
	APP_DEFAULT_LOCALE)
		case $2 in
		[A-Za-z][A-Za-z] | [A-Za-z][A-Za-z][A-Za-z] | [A-Za-z][A-Za-z][_-][A-Za-z0-9]* | [A-Za-z][A-Za-z][A-Za-z][_-][A-Za-z0-9]*)
			case $2 in
			*[!A-Za-z0-9_@.-]*) note error 'APP_DEFAULT_LOCALE: must be a locale such as en_US or de_DE' ;;
			esac
			;;
		*) note error 'APP_DEFAULT_LOCALE: must be a locale such as en_US or de_DE' ;;
		esac
		;;
	APP_ENCODING)
		case $2 in
		*[!A-Za-z0-9_.:-]*) note error 'APP_ENCODING: must be a character set name such as UTF-8' ;;
		esac
		;;
	HTTPS | HTTP_HOST | HTTP_X_FORWARDED_PROTO | SCRIPT_NAME)
		note warning "$1: is a server variable the web server sets for each request, not a setting; remove it (FULL_BASE_URL sets the public address)"
		;;
	OSCB_REPLICAS) check_replicas "$2" ;;
	esac
}

# The URL settings: which schemes each accepts.
check_url_setting() { # KEY VALUE
	case $1 in
	DATABASE_URL) check_database_url "$2" ;;
	DATABASE_TEST_URL) ;; # the test suite's, never used by a deployment
	CACHE_*_URL)
		check_scheme "$1" "$2" 'file redis memcached array null' 'e.g. redis://redis:6379?database=2'
		case $1 in
		CACHE_DEFAULT_URL) cache_url_scheme=$scheme ;;
		esac
		;;
	LOG_*_URL) check_scheme "$1" "$2" 'file console syslog' 'e.g. console:///?stream=php://stderr' ;;
	EMAIL_TRANSPORT_DEFAULT_URL) check_scheme "$1" "$2" 'smtp mail debug' 'e.g. smtp://USER:PASSWORD@mail.example.com:587?tls=true' ;;
	QUEUE_URL) check_scheme "$1" "$2" 'redis rediss file' 'e.g. redis://:PASSWORD@redis:6379/1' ;;
	*) check_http "$1" "$2" ;; # V2_BASE_URL, LOGOUT_CHAIN_URL, CRITICAL_PATH_BASE_URL, STORAGE_ENDPOINT, EDITOR_DOCSERVER_ORIGIN
	esac
}

check_replicas() { # VALUE
	case $1 in
	*[!0-9]* | 0*) note error 'OSCB_REPLICAS: must be a whole number, 1 or more (the number of web replicas)' ;;
	*) replicas=$1 ;;
	esac
}

# Rules between keys, once every key is known.
check_combinations() {
	for key in $SECRET_KEYS; do
		case "$secrets_direct$secrets_from_file" in
		*" $key "*" $key "*) note error "$key: is set and ${key}_FILE too; set only one of them (${key}_FILE=/path reads the value from that file)" ;;
		esac
	done
	if [ "$email_transport" = sendgrid ] && [ "$have_api_key" = 0 ]; then
		note error 'EMAIL_API_KEY: must be set when EMAIL_TRANSPORT is sendgrid'
	fi
	if [ "$samesite" = none ]; then
		case $cookie_secure in
		[Ff][Aa][Ll][Ss][Ee] | 0) note error 'SESSION_COOKIE_SAMESITE: None needs SESSION_COOKIE_SECURE=true (browsers drop SameSite=None cookies without Secure)' ;;
		esac
	fi
	case $cookie_secure in
	[Ff][Aa][Ll][Ss][Ee] | 0)
		[ "$fullbase_https" = 0 ] || note warning 'SESSION_COOKIE_SECURE: is false although FULL_BASE_URL uses https://; browsers would also send the session cookie over plain http'
		;;
	esac
	if [ -n "$cookie_domain" ] && [ -n "$base_host" ] && [ "$cookie_domain" != "$base_host" ]; then
		# Host names compare case-insensitively (two forks, only here).
		lower=$(printf '%s' "$cookie_domain" | tr '[:upper:]' '[:lower:]')
		lower_base=$(printf '%s' "$base_host" | tr '[:upper:]' '[:lower:]')
		case $lower in
		"$lower_base") ;;
		*) note error 'SESSION_COOKIE_DOMAIN: differs from the host of FULL_BASE_URL; the application redirects every request to SESSION_COOKIE_DOMAIN: set it to that host, or leave it empty' ;;
		esac
	fi
	check_shared_sessions
}

# With more than one web replica, a session must live where every replica
# reads it: a user's next request may reach another replica.
check_shared_sessions() {
	if [ -z "$replicas" ] && [ "$environ" = 0 ] && [ -n "${OSCB_REPLICAS-}" ]; then
		check_replicas "$OSCB_REPLICAS" # the caller's environment, when the file does not say
	fi
	[ -n "$replicas" ] && [ "$replicas" -gt 1 ] 2>/dev/null || return 0
	case $session_handler in
	database) return 0 ;;
	cache)
		case ${cache_url_scheme:-$cache_engine} in
		redis | memcached) return 0 ;;
		esac
		note error 'SESSION_HANDLER: is cache, but the cache is per replica (file); with OSCB_REPLICAS above 1 a login breaks whenever a request reaches another replica: set CACHE_ENGINE=redis (or memcached), or SESSION_HANDLER=database'
		return 0
		;;
	cake) what='cake keeps them in files of each replica' ;;
	*) what='php, the default, keeps them in files of each replica' ;;
	esac
	note error "SESSION_HANDLER: OSCB_REPLICAS is above 1 but sessions are not shared ($what): a login breaks whenever a request reaches another replica; set SESSION_HANDLER=database, or SESSION_HANDLER=cache with CACHE_ENGINE=redis"
}

# Keys the env file must not set. The units set TMPDIR to their private cache
# (EnvironmentFile= would override it); bash, when it is /bin/sh, has these
# read-only variables, which --exec could not export.
reserved_reason() { # KEY: sets $why, or returns 1
	case $1 in
	TMPDIR) why='the units set it to their private cache directory (where the binary extracts the application); the env file would override it' ;;
	UID | EUID | PPID | SHELLOPTS | BASHOPTS | BASH_VERSINFO) why='the shell sets it (read-only in bash)' ;;
	*) return 1 ;;
	esac
}

# --- parsing -----------------------------------------------------------------

# The definitions, "LINE KEY=VALUE" lines in file order (values hold no
# newline). Appending to one long string would copy it for every line
# (quadratic); new items gather in short buffers that are moved on when full.
pairs='' pairs_mid='' pairs_new=''
present=' ' # the required keys that are defined (or named on a refused line)

define() { # KEY VALUE LINE
	pairs_new="$pairs_new$3 $1=$2$nl"
	if [ ${#pairs_new} -ge 4096 ]; then
		pairs_mid=$pairs_mid$pairs_new pairs_new=''
		if [ ${#pairs_mid} -ge 131072 ]; then
			pairs=$pairs$pairs_mid pairs_mid=''
		fi
	fi
}

known() { # KEY: counts as defined (no "not set" noise)
	case " $REQUIRED " in
	*" $1 "*) present="$present$1 " ;;
	esac
}

# A line refused as a whole still names its key, if it starts with one.
known_from() { # LINE
	ltrim "$1"
	rtrim "${trimmed%%=*}"
	case $trimmed in
	'' | [!A-Za-z_]* | *[!A-Za-z0-9_]*) ;;
	*) known "$trimmed" ;;
	esac
}

# "KEY: RULE: READER would ..." for a line that has a valid key.
refuse() { # LINE KEY TEXT
	note error "line $1: $2: $3"
	known "$2"
}

# Split "$s" (the text after an opening quote $1) at its first $1: the value
# goes to $value, the rest to $tail. Usually the value's closing quote is the
# last quote of the line, found in linear time; otherwise (a quote in the
# rest) the slower shortest-prefix removal is bounded by MAX_LINE.
split_at_quote() { # QUOTE
	value=${s%%"$1"*}
	tail=${s##*"$1"}
	case $s in
	"$value$1$tail") ;;
	*) tail=${s#*"$1"} ;;
	esac
}

# "double quoted": \" and \\ are the only escapes. Sets $value and $tail and
# returns 0; returns 1 when the closing quote is missing, 2 on another '\'.
parse_double() {
	case $s in
	*\\*) ;;
	*\"*) split_at_quote '"'; return 0 ;;
	*) return 1 ;;
	esac
	value=
	while :; do
		case $s in
		*[\"\\]*) ;;
		*) return 1 ;;
		esac
		chunk=${s%%[\"\\]*}
		s=${s#"$chunk"}
		value=$value$chunk
		case $s in
		\"*) tail=${s#?}; return 0 ;;
		\\\"*) value=$value\"; s=${s#??} ;;
		\\\\*) value=$value\\; s=${s#??} ;;
		\\) return 1 ;;
		*) return 2 ;;
		esac
	done
}

# One line of the file: defines its key, or reports why it is refused.
parse_line() { # LINE N
	line=$1 n=$2
	case $line in
	*"$cr"*)
		note error "line $n: has a carriage return (Windows line ending); convert the file with: dos2unix $shown"
		line=${line%"$cr"}
		;;
	esac
	if [ ${#line} -gt "$MAX_LINE" ]; then
		note error "line $n: is longer than $MAX_LINE bytes"
		known_from "$line"
		return 0
	fi
	case $line in
	*[$CTL]*)
		note error "line $n: has a control character (only tab is allowed); the readers treat them differently"
		known_from "$line"
		return 0
		;;
	esac
	if has_high "$line"; then
		case $line in
		"$BOM"*)
			note error "line $n: starts with a byte order mark (BOM): systemd would read it as part of the key and ignore the line; save the file as UTF-8 without BOM"
			return 0
			;;
		esac
		scan_utf8 "$line"
		case $utf8 in
		invalid) note error "line $n: is not valid UTF-8 (Latin-1?): systemd would refuse the whole file; save it as UTF-8" ;;
		control) note error "line $n: has a control character (U+0080-U+009F); the readers treat them differently" ;;
		nonchar) note error "line $n: has a Unicode noncharacter (U+FFFE, U+FFFF, U+FDD0-U+FDEF...): systemd would refuse the whole file" ;;
		esac
		if [ "$utf8" != ok ]; then
			known_from "$line"
			return 0
		fi
	fi
	ltrim "$line"
	line=$trimmed
	case $line in
	'') return 0 ;;
	'#'*)
		case $line in
		*\\)
			note error "line $n: comment ends with '\\': systemd (before 254) would take the next line as part of the comment"
			;;
		esac
		return 0
		;;
	';'*)
		note error "line $n: starts with ';': systemd reads it as a comment, Docker Compose refuses the file; use '#'"
		return 0
		;;
	export[[:blank:]]*)
		ltrim "${line#export}"
		key=${trimmed%%[=[:blank:]]*}
		case $key in
		'' | [!A-Za-z_]* | *[!A-Za-z0-9_]*) key= ;;
		esac
		note error "line $n: starts with 'export': systemd ignores the line and logs it, value included, to the journal; remove 'export '"
		[ -z "$key" ] || known "$key"
		return 0
		;;
	esac
	case $line in
	*=*) ;;
	*) note error "line $n: no '=' found (expected KEY=VALUE)"; return 0 ;;
	esac
	rtrim "${line%%=*}"
	key=$trimmed
	case $key in
	'' | [!A-Za-z_]* | *[!A-Za-z0-9_]*)
		note error "line $n: invalid key name (expected [A-Za-z_][A-Za-z0-9_]* before '=')"
		return 0
		;;
	esac
	if reserved_reason "$key"; then
		refuse "$n" "$key" "is reserved: $why; remove the line"
		return 0
	fi
	raw=${line#*=}
	ltrim "$raw"
	case $trimmed in
	\"*)
		s=${trimmed#?}
		rc=0
		parse_double || rc=$?
		case $rc in
		1) refuse "$n" "$key" 'unterminated double quote (a value cannot span lines)'; return 0 ;;
		2) refuse "$n" "$key" "'\\' in double quotes before a character other than '\"' or '\\': systemd, Docker Compose and python-dotenv read such escapes differently; use single quotes"; return 0 ;;
		esac
		case $value in
		*\$*) refuse "$n" "$key" "'\$' in double quotes: Docker Compose would substitute a variable; use single quotes"; return 0 ;;
		esac
		;;
	\'*)
		s=${trimmed#?}
		case $s in
		*\'*) split_at_quote "'" ;;
		*) refuse "$n" "$key" 'unterminated single quote (a value cannot span lines)'; return 0 ;;
		esac
		case $value in
		*\\ | *\\\\*) refuse "$n" "$key" "'\\' before '\\' or the closing quote in single quotes: python-dotenv and Docker Compose read it as an escape, systemd does not"; return 0 ;;
		esac
		;;
	*)
		case $raw in
		*[[:blank:]]\#*) refuse "$n" "$key" "inline comment (' #'): systemd would keep it in the value; put the comment on a line of its own"; return 0 ;;
		esac
		case $trimmed in
		*\\*) refuse "$n" "$key" "'\\' in an unquoted value: systemd drops it (and a trailing one joins the next line to this one); use single quotes"; return 0 ;;
		*\$*) refuse "$n" "$key" "'\$' in an unquoted value: Docker Compose would substitute a variable; use single quotes"; return 0 ;;
		esac
		rtrim "$trimmed"
		value=$trimmed
		if has_high "$value"; then
			scan_utf8 "$value"
			if [ "$uspace" = 1 ]; then
				refuse "$n" "$key" 'Unicode space (U+00A0, U+2000...) in an unquoted value: Docker Compose and python-dotenv trim it, systemd does not; quote the value'
				return 0
			fi
		fi
		tail=
		;;
	esac
	case $tail in
	*[![:blank:]]*)
		ltrim "$tail"
		case $trimmed in
		'#'*) refuse "$n" "$key" 'comment after the closing quote: systemd would append it to the value; put the comment on a line of its own' ;;
		*) refuse "$n" "$key" 'text after the closing quote: systemd would append it to the value, Docker Compose would read it as another line' ;;
		esac
		return 0
		;;
	esac
	define "$key" "$value" "$n"
}

parse_file() {
	n=0
	while IFS= read -r line || [ -n "$line" ]; do
		n=$((n + 1))
		parse_line "$line" "$n"
	done <"$file"
}

# Which definitions win: "LINE w" for the last definition of each key,
# "LINE d KEY" for each one after the first, ordered by line. Only keys and
# line numbers go through the pipes, never a value.
rank_definitions() {
	for pair in $pairs; do
		key=${pair#* }
		printf '%s %s\n' "${key%%=*}" "${pair%% *}"
	done | sort -k1,1 -k2,2n | {
		prev='' last=''
		while IFS=' ' read -r key n; do
			if [ "$key" = "$prev" ]; then
				printf '%s d %s\n' "$n" "$key"
			elif [ -n "$prev" ]; then
				printf '%s w\n' "$last"
			fi
			prev=$key last=$n
		done
		[ -z "$prev" ] || printf '%s w\n' "$last"
	} | sort -n
}

# Check the last value of each key, in file order, and name each redefinition.
check_definitions() {
	pairs=$pairs$pairs_mid$pairs_new pairs_mid='' pairs_new=''
	IFS=$nl
	ranks=$(rank_definitions)
	# shellcheck disable=SC2086 # one rank per word, ascending like $pairs
	set -- $ranks
	for pair in $pairs; do
		IFS=$ifs_default
		n=${pair%% *}
		pair=${pair#* }
		key=${pair%%=*}
		if [ "$1" = "$n d $key" ]; then
			note warning "$key: defined again on line $n; the last definition wins"
			shift
		fi
		if [ "$1" = "$n w" ]; then
			shift
			known "$key"
			check_pair "$key" "${pair#*=}"
		fi
	done
	IFS=$ifs_default
}

parse_environ() {
	# printenv fails for an unset variable; set-but-empty is checked. One
	# printenv per key would cost a fork for each of the many known keys on
	# every start, so `export -p` (one fork) says first which ones are set;
	# a value that happens to contain " KEY=" only costs a needless printenv.
	exported=$(export -p)
	for key in $KNOWN; do
		case $exported in
		*" $key="*) ;;
		*) continue ;;
		esac
		if value=$(printenv "$key"); then
			known "$key"
			check_pair "$key" "$value"
		fi
	done
}

# --- main ----------------------------------------------------------------------

if [ "$environ" = 1 ]; then
	shown=environment
	parse_environ
else
	case $file in
	/*) shown=$file ;;
	*) shown=${PWD%/}/${file#./} ;;
	esac
	if [ ! -f "$file" ] || [ ! -r "$file" ] || ! (: <"$file") 2>/dev/null; then
		printf 'error: %s: cannot read the file (missing, not a regular file, or no permission)\n' "$shown"
		printf 'hint: create it from .env.example (cp .env.example %s) and fill it in; see %s\n' "$file" "$DOCS"
		exit 2
	fi
	# read would silently drop NUL bytes; a file holding any is not a text
	# env file (a binary, or UTF-16 saved by an editor).
	size=$(wc -c <"$file")
	text=$(tr -d '\000' <"$file" | wc -c)
	if [ $((size)) -ne $((text)) ]; then
		printf 'error: %s: contains NUL bytes (not a text file; UTF-16? save it as UTF-8)\n' "$shown"
		printf 'validate-env: %s: 1 error, 0 warnings\n' "$shown"
		printf 'hint: edit %s (plain KEY=VALUE lines, UTF-8); see %s\n' "$shown" "$DOCS"
		exit 1
	fi
	parse_file
	check_definitions
fi

for key in $REQUIRED; do
	case $present in
	*" $key "*) ;;
	*) note error "$key: is required but not set" ;;
	esac
done
if [ "$smtp_host_set" = 1 ] && [ "$smtp_port_set" = 0 ]; then
	note error 'SMTP_PORT: must be set when SMTP_HOST is set'
fi
check_combinations

plural() { # COUNT WORD
	if [ "$1" = 1 ]; then printf '1 %s' "$2"; else printf '%s %ss' "$1" "$2"; fi
}

if [ "$errors" -gt 0 ]; then
	printf 'validate-env: %s: %s, %s\n' "$shown" "$(plural "$errors" error)" "$(plural "$warnings" warning)"
	if [ "$environ" = 1 ]; then
		printf 'hint: fix these variables where the environment is set (the env file of the service, or docker compose env_file/environment); see %s\n' "$DOCS"
	else
		printf 'hint: edit %s to fix the lines above; see %s\n' "$shown" "$DOCS"
	fi
	exit 1
fi
if [ "$quiet" = 0 ]; then
	if [ "$warnings" -gt 0 ]; then
		printf 'validate-env: %s: OK, %s\n' "$shown" "$(plural "$warnings" warning)"
	else
		printf 'validate-env: %s: OK\n' "$shown"
	fi
fi
if [ "$exec_mode" = 1 ]; then
	# "$@" is COMMAND [ARG...]. The values are exported by this shell, in file
	# order (the last definition wins), and never appear on a command line:
	# /proc/PID/cmdline is readable by every local user. They go into the
	# arguments first, before "--": a loop over a named variable would
	# clobber a key of the same name.
	if [ "$lc_all_set" = set ]; then LC_ALL=$lc_all_value; else unset LC_ALL; fi
	# A secret given as KEY_FILE is exported as KEY, with the file's content,
	# and KEY_FILE is unset (a second validation would see both). Only "$@"
	# is read from here on: an exported key may have any variable's name.
	IFS=$nl
	# shellcheck disable=SC2086 # one "LINE KEY=VALUE", "KEY=VALUE" or name per word
	set -- $pairs -- $file_exports -- $file_keys -- "$@"
	while [ "$1" != -- ]; do
		export "${1#* }"
		shift
	done
	shift
	while [ "$1" != -- ]; do
		export "${1?}"
		shift
	done
	shift
	while [ "$1" != -- ]; do
		unset "$1"
		shift
	done
	shift
	exec "$@"
fi
exit 0
