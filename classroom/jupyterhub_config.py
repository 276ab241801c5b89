"""JupyterHub for a karpa-lab class on one server: real system users, nbgrader's exchange, the course's settings.

    sudo <env>/bin/jupyterhub -f classroom/jupyterhub_config.py

Each person logs in as their own system user and gets a JupyterLab server running as that user, so nbgrader
takes each student's id from the operating system (the one id it trusts) and the exchange's permissions keep
submissions apart. Instructors get nbgrader's teacher tools (Formgrader, Create Assignment); students get the
Assignments tab (Nbgrader > Assignment List) to fetch labs, submit them and fetch their feedback.

Set the class below, or with the environment variables in brackets (the classroom test uses those):

- instructors and students [KARPA_INSTRUCTORS, KARPA_STUDENTS]: system user names, separated by spaces;
- the course environment's ``bin/`` [KARPA_ENV_BIN]: the Python environment this hub runs from, by default;
- the exchange [KARPA_EXCHANGE]: a folder every user may write, ``/srv/nbgrader/exchange`` by default;
- the hub's own state [KARPA_HUB_STATE]: its database and cookie secret, ``/srv/jupyterhub`` by default;
- where it listens [KARPA_HUB_URL, KARPA_HUB_API_URL, KARPA_PROXY_API_URL]: ``http://:8000`` for people;
- how people log in [KARPA_HUB_AUTHENTICATOR]: ``pam`` (system passwords) by default; ``dummy`` takes any
  allowed user name with the shared password in KARPA_HUB_PASSWORD, for a test on a closed machine only;
- a token for scripts [KARPA_HUB_SERVICE_TOKEN]: when set, a service ``course-admin`` holding it may start and
  stop servers and make tokens (the classroom test drives the hub through it).

classroom/README.md has the steps for a class, the recipes for bigger set-ups and the pitfalls.
"""

import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821 (defined by traitlets when JupyterHub loads this file)

COURSE_ID = "karpa-lab"  # as in labs/nbgrader_config.py
INSTRUCTORS = os.environ.get("KARPA_INSTRUCTORS", "instructor").split()
STUDENTS = os.environ.get("KARPA_STUDENTS", "").split()
ENV_BIN = Path(os.environ.get("KARPA_ENV_BIN", Path(sys.executable).parent))
EXCHANGE = os.environ.get("KARPA_EXCHANGE", "/srv/nbgrader/exchange")
STATE = Path(os.environ.get("KARPA_HUB_STATE", "/srv/jupyterhub"))
HERE = Path(__file__).resolve().parent

# Who may log in, and the groups nbgrader's multi-course set-ups read (formgrade-<course>, nbgrader-<course>).
c.Authenticator.allowed_users = set(INSTRUCTORS + STUDENTS)
c.JupyterHub.load_groups = {
    "instructors": {"users": INSTRUCTORS},
    f"formgrade-{COURSE_ID}": {"users": INSTRUCTORS},
    f"nbgrader-{COURSE_ID}": {"users": STUDENTS},
}
if os.environ.get("KARPA_HUB_AUTHENTICATOR", "pam") == "dummy":
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = os.environ["KARPA_HUB_PASSWORD"]

# Where the hub listens and keeps its state.
c.JupyterHub.bind_url = os.environ.get("KARPA_HUB_URL", "http://:8000")
c.JupyterHub.hub_bind_url = os.environ.get("KARPA_HUB_API_URL", "http://127.0.0.1:8081")
c.ConfigurableHTTPProxy.api_url = os.environ.get("KARPA_PROXY_API_URL", "http://127.0.0.1:8001")
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
# Debian's configurable-http-proxy (node-configurable-http-proxy) finds its modules only on Debian's NODE_PATH.
os.environ.setdefault("NODE_PATH", "/usr/share/nodejs")

# One JupyterLab per person, as that person's system user (the hub runs as root to switch users).
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [str(ENV_BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"


def settings_path(user: str) -> list[Path]:
    """The Jupyter settings a person's server reads, first wins: students lose the teacher tools."""
    role = ["instructor"] if user in INSTRUCTORS else ["student"]
    return [HERE / "jupyter" / role[0], HERE / "jupyter" / "common", HERE.parent / "jupyter" / "common"]


def pre_spawn_hook(spawner) -> None:
    """Give each server the course environment, the exchange, and its role's settings."""
    spawner.environment.update({
        "PATH": os.pathsep.join([str(ENV_BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
        "JUPYTER_CONFIG_PATH": os.pathsep.join(str(p) for p in settings_path(spawner.user.name)),
        "KARPA_EXCHANGE": EXCHANGE,
    })


c.Spawner.pre_spawn_hook = pre_spawn_hook

if os.environ.get("KARPA_HUB_SERVICE_TOKEN"):
    c.JupyterHub.services = [{"name": "course-admin", "api_token": os.environ["KARPA_HUB_SERVICE_TOKEN"]}]
    c.JupyterHub.load_roles = [{
        "name": "course-admin", "services": ["course-admin"],
        "scopes": ["admin:users", "admin:servers", "tokens", "list:users", "read:users", "access:servers"],
    }]
