"""`recforge export`: a bundle with parity-checked TorchScript and ONNX graphs from a real run."""

import json

from typer.testing import CliRunner

from recforge.cli.app import app

runner = CliRunner()


def test_export_writes_a_parity_checked_bundle(shared_data, tmp_path):
    trained = runner.invoke(app, ["train", "deepfm", "--dataset", "uci-adult", "--epochs", "1", "--data-dir", str(shared_data),
                                  "--output-dir", str(tmp_path / "runs"), "--quiet", "--set", "model.embedding_dim=4"])
    assert trained.exit_code == 0, trained.output
    (run,) = (tmp_path / "runs").iterdir()
    result = runner.invoke(app, ["export", str(run), "--output", str(tmp_path / "bundle"), "--format", "torchscript",
                                 "--format", "onnx", "--data-dir", str(shared_data)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert set(manifest["parity"]) == {"torchscript", "onnx"}
    assert all(record["max_abs_diff_all"] <= 1e-5 for record in manifest["parity"].values())
    again = runner.invoke(app, ["export", str(run), "--output", str(tmp_path / "bundle")])
    assert again.exit_code == 2 and "Traceback" not in again.output
