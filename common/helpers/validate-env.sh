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
#        validate-env.sh -h|--help
# exit:  0 valid (warnings allowed), 1 invalid, 2 unreadable file or usage error
#
# Output (stdout): one "error: ..." or "warning: ..." line per problem, naming
# the key (or the line number) and the rule, then a summary line and, when
# invalid, one "hint: ..." line. It never prints a value, not even part of one:
# these files hold passwords, and the output ends up in journals and CI logs.
#
# Safety: the file is parsed here, line by line, as text. It is never sourced,
# eval'ed or executed, so `X=$(cmd)` or backticks in it are just characters.
# Values never reach the argument list of another program either (they would
# show in `ps`): only the shell's builtins see them, and `tr` on a pipe.
#
# Speed: it runs at every service start, so the parse loop forks nothing.
# Note for maintainers: dash's ${v#*x} and the removal of a long literal
# (${v#"$long"}) cost time quadratic in the length; the common paths below
# avoid them, and lines are capped at MAX_LINE bytes so no file can make the
# rare paths slow.
set -eu

# Bytes, not characters: lengths, [a-z] and the rest mean the same in every
# locale and every shell (dash, bash --posix, busybox sh).
LC_ALL=C
export LC_ALL

REQUIRED='DB_HOST DB_PORT DB_USERNAME DB_PASSWORD DB_NAME SECURITY_SALT FULL_BASE_URL'
# Every variable OrangeScrum reads (the keys of .env.example): --environ checks
# these and ignores the rest of the environment, which belongs to other programs.
KNOWN="$REQUIRED DEBUG
REDIS_HOST REDIS_PORT REDIS_PASSWORD REDIS_DATABASE
QUEUE_URL QUEUE_WORKER_MAX_RUNTIME QUEUE_WORKER_SLEEP
STORAGE_ENDPOINT STORAGE_ACCESS_KEY STORAGE_SECRET_KEY STORAGE_BUCKET STORAGE_REGION STORAGE_PATH_STYLE
SMTP_HOST SMTP_PORT SMTP_USERNAME SMTP_PASSWORD SMTP_TLS FROM_EMAIL SSL_CERT_FILE"
MAX_LINE=8192
DOCS=docs/CONFIGURATION.md

nl='
'
cr=$(printf '\r')

usage() {
	cat <<'EOF'
usage: validate-env.sh [-q|--quiet] [FILE]       check FILE (default: ./.env)
       validate-env.sh [-q|--quiet] --environ    check the process environment
       validate-env.sh [-q|--quiet] --exec FILE -- COMMAND [ARG...]
                                          check FILE; if valid, run COMMAND with
                                          FILE's values in its environment
       validate-env.sh -h|--help

Checks OrangeScrum's settings without running anything from the file and
without printing any value. Prints one line per problem, then a summary.
  -q, --quiet   print nothing when the settings are valid (warnings still print)
Exit status: 0 valid (warnings allowed), 1 invalid, 2 unreadable file or usage error.
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
exec_mode=0
file=
have_file=0
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help) usage; exit 0 ;;
	-q | --quiet) quiet=1 ;;
	--environ) environ=1 ;;
	--exec)
		# --exec FILE -- COMMAND [ARG...]: validate FILE, then run COMMAND with
		# FILE's values added to the environment (set with env(1), never evaluated).
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
[ "$have_file" = 1 ] || file=.env
[ -n "$file" ] || usage_error 'FILE is empty'

# --- the report --------------------------------------------------------------
# Problems are collected, not printed at once, because a key defined twice
# counts only once (the last definition wins): redefining KEY drops the
# messages about its earlier value. Each report line is "OWNER LEVEL: TEXT";
# OWNER is the key the message is about, or "-" for messages about lines.

report=
note() { # OWNER LEVEL TEXT
	report="$report$1 $2: $3$nl"
}

forget() { # KEY: drop the messages about KEY's previous value
	kept='' rest=$report
	while [ -n "$rest" ]; do
		item=${rest%%"$nl"*}
		rest=${rest#*"$nl"}
		case $item in
		"$1 "*) ;;
		*) kept="$kept$item$nl" ;;
		esac
	done
	report=$kept
}

# --- small string helpers (no forks; results in $trimmed) --------------------

ltrim() { trimmed=$1; trimmed=${trimmed#"${trimmed%%[![:blank:]]*}"}; }
rtrim() { trimmed=$1; trimmed=${trimmed%"${trimmed##*[![:blank:]]}"}; }

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
		note "$1" error "$1: is still a placeholder from .env.example; set a real secret"
		return 0
	fi
	if is_denied "$2"; then
		note "$1" error "$1: is a well-known default password; generate one with: openssl rand -base64 24"
		return 0
	fi
	# A provider issues the SMTP password (Gmail app passwords are 16 lower
	# case letters): a weak one is reported but must not stop the service.
	level=error
	[ "$1" != SMTP_PASSWORD ] || level=warning
	if [ ${#2} -lt 12 ]; then
		note "$1" "$level" "$1: must be at least 12 characters long"
		return 0
	fi
	classes=0
	case $2 in *[a-z]*) classes=$((classes + 1)) ;; esac
	case $2 in *[A-Z]*) classes=$((classes + 1)) ;; esac
	case $2 in *[0-9]*) classes=$((classes + 1)) ;; esac
	case $2 in *[!A-Za-z0-9]*) classes=$((classes + 1)) ;; esac
	# 24+ random characters are strong even from two classes: this lets the
	# output of `openssl rand -hex 16` pass, which the 3-class rule would refuse.
	if [ ${#2} -ge 24 ]; then need=2; else need=3; fi
	if [ "$classes" -lt "$need" ]; then
		if [ "$need" = 3 ]; then
			note "$1" "$level" "$1: must mix at least 3 of: lower case, upper case, digits, other characters (or be 24+ characters long)"
		else
			note "$1" "$level" "$1: must mix at least 2 of: lower case, upper case, digits, other characters"
		fi
	fi
}

check_salt() { # VALUE
	if is_secret_placeholder "$1" || is_denied "$1"; then
		note SECURITY_SALT error 'SECURITY_SALT: is still a placeholder from .env.example; generate one with: openssl rand -hex 32'
	elif [ ${#1} -lt 32 ]; then
		note SECURITY_SALT error 'SECURITY_SALT: must be at least 32 characters long; generate one with: openssl rand -hex 32'
	fi
}

check_port() { # KEY VALUE
	case $2 in
	tcp://* | udp://*)
		# Kubernetes service links and legacy Docker links set <NAME>_PORT
		# to an address; OrangeScrum would read that as its port.
		note "$1" error "$1: must be a port number between 1 and 65535 (it holds a tcp:// address, as Kubernetes service links set; set $1 explicitly)"
		return 0
		;;
	*[!0-9]*)
		note "$1" error "$1: must be a port number between 1 and 65535"
		return 0
		;;
	esac
	digits=${2#"${2%%[!0]*}"} # leading zeros would read as octal elsewhere
	if [ -z "$digits" ] || [ ${#digits} -gt 5 ] || [ "$digits" -gt 65535 ]; then
		note "$1" error "$1: must be a port number between 1 and 65535"
	fi
}

check_count() { # KEY VALUE: a non-negative integer (seconds, a database number)
	case $2 in
	*[!0-9]*) note "$1" error "$1: must be a whole number (0 or more)" ;;
	esac
}

check_url() { # VALUE
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
	if [ -z "$host" ]; then
		note FULL_BASE_URL error 'FULL_BASE_URL: must start with http:// or https:// and name a host'
		return 0
	fi
	case $1 in
	http://*) note FULL_BASE_URL warning 'FULL_BASE_URL: uses http://; serve OrangeScrum over https:// in production' ;;
	esac
	case $rest in
	*/) note FULL_BASE_URL warning "FULL_BASE_URL: ends with '/'; remove it, or generated links get a double slash" ;;
	esac
}

check_email() { # VALUE
	case $1 in
	*[[:space:]\<\>\"]* | *@*@* | @* | *@ | *@.* | *. | *..*) ok=0 ;;
	?*@?*) ok=1 ;;
	*) ok=0 ;;
	esac
	if [ "$ok" = 0 ]; then
		note FROM_EMAIL error 'FROM_EMAIL: must look like an e-mail address (local@domain)'
	fi
}

smtp_host_set=0
smtp_port_set=0

# One KEY=VALUE after parsing (file mode) or from the environment (--environ).
check_pair() { # KEY VALUE
	# Cross-key rule input; the last definition wins here too.
	case $1 in
	SMTP_HOST) if [ -n "$2" ]; then smtp_host_set=1; else smtp_host_set=0; fi ;;
	SMTP_PORT) if [ -n "$2" ]; then smtp_port_set=1; else smtp_port_set=0; fi ;;
	esac
	if [ -z "$2" ]; then # empty means unset: only required keys care
		case " $REQUIRED " in
		*" $1 "*) note "$1" error "$1: is required but empty" ;;
		esac
		return 0
	fi
	case $1 in
	SECURITY_SALT) check_salt "$2"; return 0 ;;
	DB_PASSWORD | STORAGE_SECRET_KEY | REDIS_PASSWORD | SMTP_PASSWORD) check_secret "$1" "$2"; return 0 ;;
	esac
	if is_placeholder "$2"; then
		note "$1" error "$1: is still a placeholder from .env.example; set a real value"
		return 0
	fi
	case $1 in
	*_PORT) check_port "$1" "$2" ;;
	FULL_BASE_URL) check_url "$2" ;;
	DEBUG)
		case $2 in
		[Tt][Rr][Uu][Ee] | 1) note DEBUG warning 'DEBUG: is true; never run production with DEBUG enabled' ;;
		[Ff][Aa][Ll][Ss][Ee] | 0) ;;
		*) note DEBUG error 'DEBUG: must be true, false, 1 or 0' ;;
		esac
		;;
	STORAGE_PATH_STYLE)
		case $2 in
		[Tt][Rr][Uu][Ee] | [Ff][Aa][Ll][Ss][Ee]) ;;
		*) note STORAGE_PATH_STYLE error 'STORAGE_PATH_STYLE: must be true or false' ;;
		esac
		;;
	FROM_EMAIL) check_email "$2" ;;
	QUEUE_WORKER_MAX_RUNTIME | QUEUE_WORKER_SLEEP | REDIS_DATABASE) check_count "$1" "$2" ;;
	esac
}

seen=' ' # the keys defined so far, space separated
pairs=  # --exec: KEY=VALUE lines, in file order (values hold no newline)

define() { # KEY VALUE LINE
	[ "$exec_mode" = 0 ] || pairs="$pairs$1=$2$nl"
	case $seen in
	*" $1 "*)
		note - warning "$1: defined again on line $3; the last definition wins"
		forget "$1"
		;;
	esac
	seen="$seen$1 "
	check_pair "$1" "$2"
}

# --- parsing one line --------------------------------------------------------

# The text after a closing quote may only be blanks, or blanks then a comment.
tail_ok() { # TEXT
	case $1 in
	*[![:blank:]]*) ;;
	*) return 0 ;;
	esac
	case $1 in
	[[:blank:]]*) ltrim "$1"; case $trimmed in '#'*) return 0 ;; esac ;;
	esac
	return 1
}

# Split "$s" (the text after an opening quote $1) at its first $1: the value
# goes to $value, the rest to $tail. Usually the value's closing quote is the
# last quote of the line, found in linear time; otherwise (a quote in the
# comment) the slower shortest-prefix removal is bounded by MAX_LINE.
split_at_quote() { # QUOTE
	value=${s%%"$1"*}
	tail=${s##*"$1"}
	case $s in
	"$value$1$tail") ;;
	*) tail=${s#*"$1"} ;;
	esac
}

# "double quoted": \" and \\ are escapes; any other backslash is kept as is.
# Sets $value and $tail; returns 1 when the closing quote is missing.
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
		*) value=$value\\; s=${s#?} ;;
		esac
	done
}

parse_file() {
	n=0
	while IFS= read -r line || [ -n "$line" ]; do
		n=$((n + 1))
		case $line in
		*"$cr"*)
			note - error "line $n: has a carriage return (Windows line ending); convert the file with: dos2unix $shown"
			line=${line%"$cr"}
			;;
		esac
		if [ ${#line} -gt "$MAX_LINE" ]; then
			note - error "line $n: is longer than $MAX_LINE characters"
			continue
		fi
		ltrim "$line"
		line=$trimmed
		case $line in
		'' | '#'*) continue ;;
		export[[:blank:]]*) ltrim "${line#export}"; line=$trimmed ;;
		esac
		case $line in
		*=*) ;;
		*) note - error "line $n: no '=' found (expected KEY=VALUE)"; continue ;;
		esac
		key=${line%%=*}
		case $key in
		'' | [!A-Za-z_]* | *[!A-Za-z0-9_]*)
			note - error "line $n: invalid key name (expected [A-Za-z_][A-Za-z0-9_]* directly before '=')"
			continue
			;;
		esac
		raw=${line#"$key"=}
		ltrim "$raw"
		case $trimmed in
		\"* | \'*)
			s=${trimmed#?}
			ok=0
			case $trimmed in
			\"*)
				what=double
				if parse_double; then ok=1; fi
				;;
			*)
				what=single
				case $s in *\'*) split_at_quote "'"; ok=1 ;; esac
				;;
			esac
			# Malformed lines are named by number only: their text may
			# be a secret. The key counts as defined (not also "missing").
			if [ "$ok" = 0 ]; then
				note - error "line $n: unterminated $what quote"
				seen="$seen$key "
				continue
			fi
			if ! tail_ok "$tail"; then
				note - error "line $n: unexpected text after the closing quote (only a ' #' comment may follow)"
				seen="$seen$key "
				continue
			fi
			;;
		*)
			# Unquoted: a comment starts at a '#' preceded by a blank.
			value=${raw%%[[:blank:]]#*}
			ltrim "$value"
			rtrim "$trimmed"
			value=$trimmed
			;;
		esac
		define "$key" "$value" "$n"
	done <"$file"
}

parse_environ() {
	for key in $KNOWN; do
		# printenv fails for an unset variable; set-but-empty is checked.
		if value=$(printenv "$key"); then
			define "$key" "$value" 0
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
fi

for key in $REQUIRED; do
	case $seen in
	*" $key "*) ;;
	*) note "$key" error "$key: is required but not set" ;;
	esac
done
if [ "$smtp_host_set" = 1 ] && [ "$smtp_port_set" = 0 ]; then
	note SMTP_PORT error 'SMTP_PORT: must be set when SMTP_HOST is set'
fi

errors=0
warnings=0
out=
rest=$report
while [ -n "$rest" ]; do
	item=${rest%%"$nl"*}
	rest=${rest#*"$nl"}
	item=${item#* } # drop the owner
	case $item in
	error:*) errors=$((errors + 1)) ;;
	warning:*) warnings=$((warnings + 1)) ;;
	esac
	out="$out$item$nl"
done

plural() { # COUNT WORD
	if [ "$1" = 1 ]; then printf '1 %s' "$2"; else printf '%s %ss' "$1" "$2"; fi
}

printf '%s' "$out"
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
	# "$@" is COMMAND [ARG...]: append the pairs, then rotate the command to
	# the end, giving: env KEY=VALUE... COMMAND ARG... (later keys win).
	ncmd=$#
	rest=$pairs
	while [ -n "$rest" ]; do
		set -- "$@" "${rest%%"$nl"*}"
		rest=${rest#*"$nl"}
	done
	i=0
	while [ "$i" -lt "$ncmd" ]; do
		set -- "$@" "$1"
		shift
		i=$((i + 1))
	done
	exec env "$@"
fi
exit 0
