"""nbgrader configuration of the karpa-lab course directory.

`make release` and `make autograde` (karpa_lab/autograde/pipeline.py) copy this file into the course directory
they build, next to `source/<lab>/<lab>.ipynb`, and run nbgrader there. With JupyterHub, merge these
settings into your own course's nbgrader_config.py. Paths are relative to the course directory.
"""

c = get_config()  # noqa: F821 (defined by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "karpa-lab"
c.CourseDirectory.source_directory = "source"          # source/<lab>/<lab>.ipynb: with solutions and hidden tests
c.CourseDirectory.release_directory = "release"        # release/<lab>/<lab>.ipynb: what students get
c.CourseDirectory.submitted_directory = "submitted"    # submitted/<student>/<lab>/<lab>.ipynb: what they hand in
c.CourseDirectory.autograded_directory = "autograded"  # autograded/<student>/<lab>/: executed, with hidden tests
c.CourseDirectory.feedback_directory = "feedback"      # feedback/<student>/<lab>/<lab>.html
# A lab folder holds the notebook's jupytext twin (<lab>.py) with every solution in it: never release it.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.py"]

# Seconds per cell before the kernel is interrupted: an infinite loop costs that cell its points (the
# error output reads CellTimeoutError) and grading goes on with the next cell. Every lab's slowest
# solution cell takes a few seconds on a laptop CPU.
c.ExecutePreprocessor.timeout = 120
# On a busy machine a cell's output can trail its reply by seconds, and nbgrader abandons the whole notebook
# when it trails by more than iopub_timeout (4 s by default): wait up to a minute instead.
c.ExecutePreprocessor.iopub_timeout = 60
# A visible test cell the student deleted is put back (from the gradebook) and run, instead of
# leaving its points to chance; an edited one is always overwritten with the original.
c.OverwriteCells.add_missing_cells = True
