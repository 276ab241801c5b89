#!/usr/bin/env bash
# karpa-lab on The Littlest JupyterHub, once, as root, on a server where TLJH is installed
# (https://tljh.jupyter.org: `curl -L https://tljh.jupyter.org/bootstrap.py | sudo python3 - --admin instructor`).
#   sudo bash classroom/tljh/setup.sh           (from a clone of the course repository)
set -euo pipefail
cd "$(dirname "$0")/../.."
USER_ENV=/opt/tljh/user
# The course environment in TLJH's user environment, at the versions the course was tested with.
"$USER_ENV/bin/pip" install --quiet -c constraints.txt torch==2.13.0
"$USER_ENV/bin/pip" install --quiet -c constraints.txt ".[lab,grading]"
# Everyone's shared copy: the lessons and the settings, without the labs' sources and the worked solutions
# (those stay in the instructor's own clone, in a home only they can read).
rm -rf /opt/karpa-lab && mkdir -p /opt/karpa-lab
cp -r lessons jupyter classroom /opt/karpa-lab/
rm -rf /opt/karpa-lab/lessons/solutions
chmod -R a+rX /opt/karpa-lab
# nbgrader's exchange: every user writes into it; release_assignment makes each course's folders with the
# permissions that keep submissions apart (inbound: write only; feedback: by secret name).
mkdir -p /srv/nbgrader/exchange && chmod 0777 /srv/nbgrader/exchange
# Private homes: TLJH creates users with Debian's default home mode, which others can read.
sed -i 's/^#\?HOME_MODE.*/HOME_MODE\t0700/' /etc/login.defs
for home in /home/jupyter-*; do [ -d "$home" ] && chmod 0700 "$home"; done
cp classroom/tljh/karpa_lab.py /opt/tljh/config/jupyterhub_config.d/karpa_lab.py
cp classroom/tljh/config.yaml /opt/tljh/config/config.yaml
tljh-config reload
echo "karpa-lab is set up: log in as an instructor and follow classroom/README.md (Each week)."
