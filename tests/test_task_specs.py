"""Class names travel with a task: its definition or its data name them, its TaskSpec keeps them."""
import pytest

from paenet import tasks
from paenet.models import TaskSpec
from paenet.tasks import TaskData, TaskDefinition


def test_a_spec_keeps_its_class_names_and_reads_older_specs_the_same():
    spec = TaskSpec("gender", 2, ["male", "female"])
    assert spec.class_names == ("male", "female") and spec.label(1) == "female"
    assert TaskSpec.from_dict(spec.to_dict()) == spec
    assert TaskSpec("face", 0).to_dict() == {"name": "face", "num_classes": 0}    # as before names
    assert TaskSpec("age", 3).label(2) == "2"
    with pytest.raises(ValueError, match="3 class names for 2 classes"):
        TaskSpec("gender", 2, ("a", "b", "c"))


def test_the_data_names_the_classes_before_the_definition():
    definition = TaskDefinition("t", 2, "test", load=None, class_names=("a", "b"))
    assert definition.spec().class_names == ("a", "b")
    assert definition.spec(TaskData(None, None, class_names=("x", "y"))).class_names == ("x", "y")


def test_the_paper_tasks_name_their_classes():
    assert tasks.get("age").class_names[0] == "0-2" and len(tasks.get("age").class_names) == 8
    assert tasks.get("expression").class_names[1] == "happy"
    assert tasks.get("gender").spec().class_names == ("male", "female")
