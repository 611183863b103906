#!/usr/bin/env bash
# The demo: the example shop's PROD and TEST back offices, a worker, the embedded Redis and a local
# mail catcher, with demo data. Needs only Python 3.11+. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
prod_port=${PROD_PORT:-5000}
test_port=${TEST_PORT:-5001}
mail_port=${MAIL_PORT:-8025}

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[example]"

flask=".venv/bin/flask --app example_host"
export FLASK_MAIL_SERVER=127.0.0.1 FLASK_MAIL_PORT=$mail_port
instance=$(.venv/bin/python -c 'from example_host import create_app; print(create_app().instance_path)')
mkdir -p "$instance/mail/new" "$instance/mail/cur" "$instance/mail/tmp"  # a Maildir

if [ "${DEMO_RESET:-1}" = 1 ]; then
  $flask demo-data --reset
fi

pids=()
stop() {
  trap - INT TERM EXIT
  # Piped into tee or a pager, Ctrl-C ends the reader too: a write to it must not end the clean-up.
  trap '' PIPE
  { echo; echo "Stopping the demo..."; } 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  $flask envsync redis --stop >/dev/null 2>&1 || true
}
trap stop INT TERM EXIT

# E-mails are caught locally, one file each, in the instance folder.
.venv/bin/python -m aiosmtpd -n -l "127.0.0.1:$mail_port" -c aiosmtpd.handlers.Mailbox "$instance/mail" &
pids+=($!)
$flask envsync redis
FLASK_ENVSYNC_CURRENT_ENVIRONMENT=PROD $flask envsync worker > "$instance/worker.log" 2>&1 &
pids+=($!)
FLASK_ENVSYNC_CURRENT_ENVIRONMENT=PROD $flask run --port "$prod_port" > "$instance/prod.log" 2>&1 &
pids+=($!)
FLASK_ENVSYNC_CURRENT_ENVIRONMENT=TEST $flask run --port "$test_port" > "$instance/test.log" 2>&1 &
pids+=($!)

sleep 2
cat <<INFO

  PROD back office: http://127.0.0.1:$prod_port/admin/   (System > Synchronization starts here)
  TEST back office: http://127.0.0.1:$test_port/admin/

  Log in as admin@example.com / admin   (may synchronize)
         or editor@example.com / editor (may not)

  Worker log: $instance/worker.log    E-mails: $instance/mail/
  Press Ctrl-C to stop.
INFO
wait
