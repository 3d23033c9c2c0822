#!/usr/bin/env bash
# Kaldi-style option parsing for recipe scripts.  Source it, do not run it:
#
#   nj=4                      # every option must be declared (with its default)
#   use_gpu=false             # before sourcing; a true/false default makes the
#   help_message="Usage: $0 [options] <data-dir>"   # option a boolean
#   . utils/parse_options.sh
#   data=$1                   # the positional arguments are left in "$@"
#
# --foo-bar v     sets foo_bar=v; foo_bar must already be set in the caller, so a
#                 typo is an error instead of a silently ignored option.
# --x=v           rejected: Kaldi scripts use "--x v" only.
# --config file   sources a file of name=value lines before any command-line
#                 option is applied, so the command line always wins.
# --help, -h      prints $help_message to stdout and exits 0.
# --              ends the options; so does the first argument not starting
#                 with "--" (and not -h).
#
# Every variable of ours is prefixed with _po_ and unset at the end, because this
# file runs in the caller's scope.

_po_err() {
  echo "$0: $*" >&2
}

_po_print_help() {
  if [ -n "${help_message:-}" ]; then
    printf '%s\n' "$help_message"
  else
    echo "$0: no help available (the script sets no \$help_message)"
  fi
}

_po_is_bool() {
  [ "$1" = true ] || [ "$1" = false ]
}

# Pass 1: walk the options, checking their shape and that each one names a
# declared variable; remember assignments so config files can go first.
_po_names=()
_po_values=()
_po_configs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      _po_print_help
      exit 0
      ;;
    --)
      shift
      break
      ;;
    --*=*)
      _po_err "option '$1' uses '=': write it as '${1%%=*} ${1#*=}' (options take their value as the next argument)"
      exit 1
      ;;
    --?*)
      _po_opt=$1
      _po_name=${1#--}
      _po_name=${_po_name//-/_}
      if [ $# -lt 2 ]; then
        _po_err "option '$_po_opt' needs a value (e.g. '$_po_opt <value>'); see $0 --help"
        exit 1
      fi
      if [ "$_po_name" = config ]; then
        if [ ! -r "$2" ]; then
          _po_err "config file '$2' given to --config does not exist or is not readable"
          exit 1
        fi
        _po_configs+=("$2")
        # A script that declares $config gets the value too, as in Kaldi.
        if [[ -v config ]]; then
          _po_names+=(config)
          _po_values+=("$2")
        fi
        shift 2
        continue
      fi
      if ! [[ $_po_name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || ! [[ -v $_po_name ]]; then
        _po_err "unknown option '$_po_opt' (this script has no setting '$_po_name'); the valid options are listed below"
        _po_print_help >&2
        exit 1
      fi
      _po_names+=("$_po_name")
      _po_values+=("$2")
      shift 2
      ;;
    *)
      break
      ;;
  esac
done

# Pass 2: config files.  Each line is checked before sourcing so a typo in a
# name, or a line that is not an assignment, is reported with file and line.
for _po_cfg in ${_po_configs[@]+"${_po_configs[@]}"}; do
  _po_lineno=0
  while IFS= read -r _po_line || [ -n "$_po_line" ]; do
    _po_lineno=$((_po_lineno + 1))
    _po_stripped=${_po_line#"${_po_line%%[![:space:]]*}"}
    case "$_po_stripped" in
      ''|'#'*) continue ;;
    esac
    if ! [[ $_po_stripped =~ ^([A-Za-z_][A-Za-z0-9_]*)= ]]; then
      _po_err "$_po_cfg:$_po_lineno: expected a 'name=value' line, got: $_po_line"
      exit 1
    fi
    _po_name=${BASH_REMATCH[1]}
    if ! [[ -v $_po_name ]]; then
      _po_err "$_po_cfg:$_po_lineno: unknown setting '$_po_name' (this script has no such option); see $0 --help"
      exit 1
    fi
  done < "$_po_cfg"
  # Remember which settings were booleans, since sourcing may change them.
  _po_bool_names=()
  for _po_name in $(compgen -v); do
    case "$_po_name" in _po_*) continue ;; esac
    if _po_is_bool "${!_po_name-}"; then
      _po_bool_names+=("$_po_name")
    fi
  done
  # shellcheck disable=SC1090
  . "$_po_cfg"
  for _po_name in ${_po_bool_names[@]+"${_po_bool_names[@]}"}; do
    if ! _po_is_bool "${!_po_name-}"; then
      _po_err "$_po_cfg: $_po_name must be true or false, got '${!_po_name-}'"
      exit 1
    fi
  done
done

# Pass 3: command-line options, in order, so a later one overrides an earlier one.
for _po_i in ${_po_names[@]+"${!_po_names[@]}"}; do
  _po_name=${_po_names[$_po_i]}
  _po_value=${_po_values[$_po_i]}
  if _po_is_bool "${!_po_name}" && ! _po_is_bool "$_po_value"; then
    _po_err "option '--${_po_name//_/-}' is a boolean: give 'true' or 'false', not '$_po_value'"
    exit 1
  fi
  # An empty --cmd almost always comes from an unset variable in the caller.
  if [ "$_po_name" = cmd ] && [ -z "$_po_value" ]; then
    _po_err "empty value given to --cmd (is \$train_cmd or similar set? see cmd.sh)"
    exit 1
  fi
  printf -v "$_po_name" '%s' "$_po_value"
done


unset _po_names _po_values _po_configs _po_cfg _po_line _po_lineno _po_stripped \
  _po_name _po_opt _po_bool_names _po_i _po_value
unset -f _po_err _po_print_help _po_is_bool
true
