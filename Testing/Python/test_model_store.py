"""Resolving models by name or path, importing packages (folder, zip, URL with SHA-256), the sample case."""

import hashlib
import shutil
import zipfile

import pytest

from ldseg import sample_data, store
from ldseg.errors import LDSegError
from ldseg.download import sha256_of


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LDSEG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def zipped(package, path):
    with zipfile.ZipFile(path, "w") as bundle:
        for file in package.iterdir():
            bundle.write(file, f"model/{file.name}")
    return path


def test_a_model_folder_resolves_by_path(random_model):
    assert store.resolve_model(str(random_model)) == random_model
    assert store.resolve_model(str(random_model / "model-card.json")) == random_model


def test_unknown_model_names_list_what_is_installed(cache):
    with pytest.raises(LDSegError, match="Model 'nope' was not found .*ldseg models import"):
        store.resolve_model("nope")


def test_import_from_zip_then_resolve_by_name(random_model, cache, tmp_path, monkeypatch):
    imported = store.import_model(str(zipped(random_model, tmp_path / "model.zip")))
    assert imported.directory == cache / "models" / "knee-bones" and imported.source == "cache"
    assert sorted(p.name for p in imported.directory.iterdir()) == ["model-card.json", "model.safetensors"]
    assert any(m.source == "cache" and m.name == "knee-bones" for m in store.list_models())
    # a name in the cache resolves when no bundled model of that name shadows it
    monkeypatch.setattr(store, "bundled_directory", lambda: tmp_path / "no-bundled-models")
    assert store.resolve_model("knee-bones") == imported.directory


def test_import_from_url_checks_the_sha256(random_model, cache, tmp_path):
    archive = zipped(random_model, tmp_path / "model.zip")
    url = archive.as_uri()
    with pytest.raises(LDSegError, match="needs its SHA-256"):
        store.import_model(url)
    with pytest.raises(LDSegError, match="was discarded"):
        store.import_model(url, sha256="0" * 64)
    assert not (cache / "models" / "knee-bones").exists()
    imported = store.import_model(url, sha256=sha256_of(archive))
    assert (imported.directory / "model.safetensors").is_file()


def test_import_refuses_a_tampered_package_and_keeps_nothing(random_model, cache, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(random_model, copy)
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(LDSegError, match="SHA-256"):
        store.import_model(str(copy))
    assert not (cache / "models").exists() or not any((cache / "models").iterdir())


def test_sample_case_from_a_local_folder_is_verified(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("LDSEG_SAMPLE_DIR", str(data_dir / "images"))
    assert sample_data.sample_case() == data_dir / "images" / "knee1.nii.gz"
    monkeypatch.setenv("LDSEG_SAMPLE_DIR", str(tmp_path))
    with pytest.raises(LDSegError, match="holds no file with the sample case's SHA-256"):
        sample_data.sample_case()


def test_sample_case_download_is_checked_and_cached(data_dir, cache, monkeypatch):
    monkeypatch.delenv("LDSEG_SAMPLE_DIR", raising=False)
    monkeypatch.setattr(sample_data, "SAMPLE_URL", (data_dir / "images" / "knee1.nii.gz").as_uri())
    path = sample_data.sample_case()
    assert path == cache / "sample" / "Case1.nii.gz"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sample_data.SAMPLE_SHA256
    monkeypatch.setattr(sample_data, "SAMPLE_URL", (data_dir / "images" / "knee2.nii.gz").as_uri())
    assert sample_data.sample_case() == path  # cached: no second download
    path.unlink()
    with pytest.raises(LDSegError, match="was discarded"):
        sample_data.sample_case()
    assert not path.exists()
