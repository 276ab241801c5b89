"""nbgrader settings every server of the class reads: the course and the exchange they share."""

import os

c = get_config()  # noqa: F821 (defined by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "karpa-lab"
c.Exchange.root = os.environ.get("KARPA_EXCHANGE", "/srv/nbgrader/exchange")
