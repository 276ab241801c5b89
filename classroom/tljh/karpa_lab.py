"""The Littlest JupyterHub: the karpa-lab class's roles, exchange and settings.

Copy to /opt/tljh/config/jupyterhub_config.d/karpa_lab.py, then `sudo tljh-config reload`. It expects the
course's shared copy at /opt/karpa-lab (classroom/tljh/setup.sh puts it there) and the exchange at
/srv/nbgrader/exchange. Edit INSTRUCTORS to the hub user names of the people who grade.
"""

import os

c = get_config()  # noqa: F821 (defined by traitlets when JupyterHub loads this file)

COURSE = "/opt/karpa-lab"
INSTRUCTORS = {"instructor"}
EXCHANGE = "/srv/nbgrader/exchange"

c.JupyterHub.load_groups = {
    "instructors": {"users": sorted(INSTRUCTORS)},
    "formgrade-karpa-lab": {"users": sorted(INSTRUCTORS)},
}


def pre_spawn_hook(spawner) -> None:
    """Students lose the teacher tools; everyone gets the exchange and the course's settings."""
    role = "instructor" if spawner.user.name in INSTRUCTORS else "student"
    settings = [f"{COURSE}/classroom/jupyter/{role}", f"{COURSE}/classroom/jupyter/common", f"{COURSE}/jupyter/common"]
    spawner.environment.update({"JUPYTER_CONFIG_PATH": os.pathsep.join(settings), "KARPA_EXCHANGE": EXCHANGE})


c.Spawner.pre_spawn_hook = pre_spawn_hook
c.Spawner.default_url = "/lab"
