"""gendistill: generation-distillation of a large fine-tuned classifier into a tiny, fast student.

    import gendistill
    config = gendistill.load_config("examples/quickstart.yaml")
    report = gendistill.run(config, "runs/quickstart")
    student = gendistill.StudentClassifier.from_pretrained("runs/quickstart/student")
    student.predict(["a new text"])
"""

__version__ = "0.1.0"

from gendistill.config import RunConfig, load_config  # noqa: E402
from gendistill.errors import GendistillError  # noqa: E402
from gendistill.pipeline import Report, Run, run  # noqa: E402
from gendistill.students import StudentClassifier  # noqa: E402

__all__ = ["GendistillError", "Report", "Run", "RunConfig", "StudentClassifier", "__version__", "load_config", "run"]
