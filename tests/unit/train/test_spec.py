import json

import pytest
from pydantic import BaseModel, ValidationError

from modelops_pipelines.spec import TrainSpec, load_spec

pytestmark = pytest.mark.unit

MINIMAL = {"modelName": "churn", "dataset": {"uri": "s3://b/k.csv", "target": "churn", "task": "classification"}}


def test_minimal_spec_gets_documented_defaults():
    spec = TrainSpec.model_validate(MINIMAL)
    assert spec.search.trials == 20 and spec.search.sampler == "tpe" and spec.search.pruning
    assert spec.search.families == ["xgboost", "hist_gradient_boosting", "random_forest", "linear"]
    assert spec.search_metric == "auc" and spec.promotion_metric == "auc"
    assert spec.experiment_name == "modelops/churn"
    assert spec.dataset.format == "auto" and spec.split.test_fraction == 0.2


def test_camel_case_aliases_and_snake_case_names_both_work():
    camel = TrainSpec.model_validate({**MINIMAL, "promotion": {"minImprovement": 0.01, "requireApproval": True},
                                      "search": {"timeoutSeconds": 30, "metric": "logloss"}})
    snake = TrainSpec.model_validate({"model_name": "churn", "dataset": MINIMAL["dataset"],
                                      "promotion": {"min_improvement": 0.01, "require_approval": True},
                                      "search": {"timeout_seconds": 30, "metric": "logloss"}})
    assert camel == snake
    assert camel.promotion_metric == "logloss"
    dumped = camel.model_dump(by_alias=True)
    assert dumped["promotion"]["minImprovement"] == 0.01 and "modelName" in dumped


@pytest.mark.parametrize("patch, fragment", [
    ({"extraField": 1}, "extraField"),
    ({"dataset": {**MINIMAL["dataset"], "targt": "x"}}, "targt"),
    ({"dataset": {**MINIMAL["dataset"], "task": "ranking"}}, "task"),
    ({"search": {"metric": "rmse"}}, "does not fit task"),
    ({"promotion": {"metric": "r2"}}, "does not fit task"),
    ({"search": {"families": ["xgboost", "xgboost"]}}, "twice"),
    ({"search": {"families": []}}, "families"),
    ({"search": {"trials": 0}}, "trials"),
    ({"promotion": {"minImprovement": -0.1}}, "minImprovement"),
    ({"dataset": {**MINIMAL["dataset"], "features": ["a", "churn"]}}, "must not contain the target"),
    ({"dataset": {**MINIMAL["dataset"], "features": ["a"], "categoricalFeatures": ["b"]}}, "not in dataset.features"),
    ({"modelName": "bad name!"}, "modelName"),
])
def test_invalid_specs_name_the_problem(patch, fragment):
    with pytest.raises(ValidationError, match=fragment):
        TrainSpec.model_validate({**MINIMAL, **patch})


def _walk(model: type[BaseModel], seen: set[str]) -> list[str]:
    missing = []
    for name, field in model.model_fields.items():
        if not field.description:
            missing.append(f"{model.__name__}.{name}")
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel) and ann.__name__ not in seen:
            seen.add(ann.__name__)
            missing += _walk(ann, seen)
    return missing


def test_every_field_is_documented_for_the_crd():
    assert _walk(TrainSpec, set()) == []
    schema = TrainSpec.model_json_schema(by_alias=True)
    assert "modelName" in schema["properties"] and schema["additionalProperties"] is False


def test_load_spec_reads_yaml_json_and_retrainschedule_documents(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(MINIMAL))
    (tmp_path / "b.yaml").write_text("modelName: churn\ndataset: {uri: /d.csv, target: churn, task: regression}\n")
    (tmp_path / "c.yaml").write_text(
        "apiVersion: modelops.dev/v1alpha1\nkind: RetrainSchedule\nspec:\n  training:\n"
        "    modelName: churn\n    dataset: {uri: /d.csv, target: y, task: classification}\n")
    assert load_spec(tmp_path / "a.json").dataset.uri == "s3://b/k.csv"
    assert load_spec(tmp_path / "b.yaml").search_metric == "rmse"
    assert load_spec(tmp_path / "c.yaml").dataset.target == "y"
    (tmp_path / "d.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_spec(tmp_path / "d.yaml")


def test_crd_schema_is_structural_and_documented():
    from modelops_pipelines.spec import crd_schema

    schema = crd_schema()
    text = json.dumps(schema)
    assert "$ref" not in text and "anyOf" not in text and '"title"' not in text
    assert '"additionalProperties": false' not in text

    def walk(node, path):
        if node.get("type") == "object" and "properties" in node:
            for name, child in node["properties"].items():
                assert child.get("description"), f"{path}.{name} has no description"
                assert "type" in child, f"{path}.{name} has no type"
                walk(child, f"{path}.{name}")

    walk(schema, "training")
    search = schema["properties"]["search"]
    assert search["default"] == {} and search["properties"]["trials"]["default"] == 20
    assert search["properties"]["families"]["default"] == ["xgboost", "hist_gradient_boosting", "random_forest",
                                                           "linear"]
    timeout = search["properties"]["timeoutSeconds"]
    assert timeout["nullable"] is True and timeout["minimum"] == 0 and timeout["exclusiveMinimum"] is True
    assert schema["required"] == ["modelName", "dataset"]
    assert schema["properties"]["dataset"]["properties"]["storageOptions"]["additionalProperties"] == {
        "type": "string"}


def test_relative_dataset_paths_in_a_spec_file_are_resolved_against_its_directory(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(tmp_path)  # not the spec's directory: the path is relative to the spec file
    (project / "s.yaml").write_text("modelName: m\ndataset: {uri: data/d.csv, target: y, task: regression}\n")
    assert load_spec(project / "s.yaml").dataset.uri == str(project / "data" / "d.csv")
    (project / "p.yaml").write_text("modelName: m\ndataset: {uri: ../up.csv, target: y, task: regression}\n")
    assert load_spec(project / "p.yaml").dataset.uri == str(tmp_path / "up.csv")
    for kept in ("s3://b/k.csv", "file:///d.csv", "https://h/d.csv", "/abs/d.csv"):
        (project / "k.yaml").write_text(f"modelName: m\ndataset: {{uri: '{kept}', target: y, task: regression}}\n")
        assert load_spec(project / "k.yaml").dataset.uri == kept


def test_a_bad_dataset_uri_says_in_one_line_what_to_write(tmp_path):
    from modelops_pipelines.spec import describe_validation_error

    (tmp_path / "s.yaml").write_text("modelName: m\ndataset: {uri: 'ftp://h/d.csv', target: y, task: regression}\n")
    with pytest.raises(ValidationError) as info:
        load_spec(tmp_path / "s.yaml")
    text = describe_validation_error(info.value)
    assert text == ("dataset.uri: 'ftp://h/d.csv' must be a path (absolute, or relative to the spec file) or a "
                    "file://, s3:// or http(s):// URL")
    assert "\n" not in text and "pattern" not in text
