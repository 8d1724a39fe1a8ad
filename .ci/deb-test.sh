#!/usr/bin/env bash
# Installs, upgrades, removes and purges the telltale-hub and telltale-agent
# packages on this (Debian, amd64) machine, as root, and checks each step:
# files, conffiles, the telltale user, the data folder, the units
# (systemd-analyze verify, and security: the hub's exposure must be OK or
# better). systemd need not be PID 1: the maintainer scripts then only
# enable the hub's unit.
#
#   .ci/deb-test.sh HUB.deb AGENT.deb
set -euo pipefail
hub_deb=$1 agent_deb=$2
units=/usr/lib/systemd/system
fail() { echo "deb-test: $*" >&2; exit 1; }
installed() { [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]; }

dpkg-deb --info "$hub_deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$hub_deb"
dpkg-deb --contents "$agent_deb"

# Install.
dpkg -i "$hub_deb" "$agent_deb"
installed telltale-hub || fail "telltale-hub is not installed"
installed telltale-agent || fail "telltale-agent is not installed"
for f in /usr/bin/telltale-hub /usr/bin/telltale-agent /etc/telltale/hub.toml \
         /etc/telltale/agent.toml "$units/telltale-hub.service" \
         "$units/telltale-agent.service" /usr/lib/sysusers.d/telltale-hub.conf \
         /usr/share/doc/telltale-hub/deploy.md; do
  [ -e "$f" ] || fail "$f is missing"
done
dpkg-query -W -f='${Conffiles}\n' telltale-hub | grep -q ' /etc/telltale/hub.toml ' ||
  fail "hub.toml is not a conffile"
dpkg-query -W -f='${Conffiles}\n' telltale-agent | grep -q ' /etc/telltale/agent.toml ' ||
  fail "agent.toml is not a conffile"
getent passwd telltale >/dev/null || fail "no telltale user"
[ "$(stat -c '%U:%G %a' /var/lib/telltale)" = "telltale:telltale 750" ] ||
  fail "/var/lib/telltale is $(stat -c '%U:%G %a' /var/lib/telltale)"
# The hub's unit is enabled (a symlink in multi-user.target.wants), the
# agent's is not (it needs its device_id first).
[ -L /etc/systemd/system/multi-user.target.wants/telltale-hub.service ] ||
  fail "the hub's unit is not enabled"
[ ! -e /etc/systemd/system/multi-user.target.wants/telltale-agent.service ] ||
  fail "the agent's unit is enabled"
telltale-hub --version
telltale-agent --version
telltale-hub check-config --config /etc/telltale/hub.toml
# The default agent config is complete but for its placeholder device id.
telltale-agent check-config --config /etc/telltale/agent.toml

# The installed units.
systemd-analyze verify "$units/telltale-hub.service" "$units/telltale-agent.service"
echo "systemd-analyze verify: both units ok"
for unit in telltale-hub telltale-agent; do
  line=$(systemd-analyze security --offline=yes "$units/$unit.service" | grep 'Overall exposure level')
  echo "$line"
  level=$(awk '{ print $(NF-1) }' <<<"$line")
  if [ "$unit" = telltale-hub ]; then
    case $level in SAFE | OK) ;; *) fail "$unit exposure is $level, want OK or better" ;; esac
  fi
done

# The hub runs as the telltale user with the installed config and data
# folder (setpriv execs it as telltale, so SIGTERM reaches the hub itself;
# ports moved to 0 in a copy: not through systemd, which is not
# running here, and 1883/8080 may be taken on a CI machine).
sed -E 's/^listen = .*/listen = "127.0.0.1:0"/' /etc/telltale/hub.toml > /tmp/telltale-deb-hub.toml
chmod 644 /tmp/telltale-deb-hub.toml
setpriv --reuid=telltale --regid=telltale --init-groups telltale-hub run --config /tmp/telltale-deb-hub.toml 2> /tmp/telltale-deb-hub.log &
hub_pid=$!
for _ in $(seq 100); do grep -q 'hub ready' /tmp/telltale-deb-hub.log && break; sleep 0.1; done
grep -q 'hub ready' /tmp/telltale-deb-hub.log || { cat /tmp/telltale-deb-hub.log; fail "the hub did not start as telltale"; }
kill -TERM "$hub_pid"
wait "$hub_pid" || fail "the hub exited with $?"
rm -f /tmp/telltale-deb-hub.toml /tmp/telltale-deb-hub.log
[ "$(stat -c %U /var/lib/telltale/hub.db)" = telltale ] || fail "hub.db is not the telltale user's"

# A conffile edit survives an upgrade; the same package installed again
# is the upgrade path (postinst configure with the old version).
echo '# local edit' >> /etc/telltale/hub.toml
dpkg -i "$hub_deb" "$agent_deb"
installed telltale-hub || fail "telltale-hub is not installed after the upgrade"
grep -q '^# local edit' /etc/telltale/hub.toml || fail "the upgrade lost a conffile edit"
[ -e /var/lib/telltale/hub.db ] || fail "the upgrade lost the database"

# Remove keeps config and data; purge deletes both, and the unit's state.
dpkg -r telltale-hub telltale-agent
[ ! -e /usr/bin/telltale-hub ] || fail "remove left the binary"
[ ! -e "$units/telltale-hub.service" ] || fail "remove left the unit"
[ -e /etc/telltale/hub.toml ] || fail "remove deleted the config"
[ -e /var/lib/telltale/hub.db ] || fail "remove deleted the database"
dpkg -P telltale-hub telltale-agent
for f in /etc/telltale /var/lib/telltale /var/lib/telltale-agent \
         /etc/systemd/system/multi-user.target.wants/telltale-hub.service; do
  [ ! -e "$f" ] || fail "purge left $f"
done
dpkg-query -W telltale-hub >/dev/null 2>&1 && fail "telltale-hub is still known to dpkg"
# The telltale user stays, as Debian packages leave system users.
getent passwd telltale >/dev/null || fail "the telltale user went away"
echo "deb-test: install, upgrade, remove and purge ok"
