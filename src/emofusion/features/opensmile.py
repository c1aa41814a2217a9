"""openSMILE's functionals (ComParE 2016, eGeMAPS v02), computed by driving the `opensmile`
package's own library through ctypes, without importing the package."""

from __future__ import annotations

import os
import sys
import threading
from functools import lru_cache
from typing import Any

import numpy as np

from ..cores import usable_cores
from ..errors import AcousticFeaturesUnavailable  # noqa: F401  (re-exported: the error family lives in emofusion.errors)

OPENSMILE_FEATURE_SETS = ("ComParE_2016", "eGeMAPSv02")
_smile_local = threading.local()
_functionals_pool: list[Any] = []  # [executor or None (one usable core)], made on first use
_functionals_pool_lock = threading.Lock()


def _functionals_executor() -> Any:
    """A thread pool as large as the cores this process may use (openSMILE releases the GIL:
    two threads run 1.7x as fast as one on two cores, with identical features)."""
    with _functionals_pool_lock:
        if not _functionals_pool:
            from concurrent.futures import ThreadPoolExecutor

            n = len(usable_cores())
            _functionals_pool.append(ThreadPoolExecutor(max_workers=n, thread_name_prefix="emofusion-smile") if n > 1 else None)
        return _functionals_pool[0]



def opensmile_functionals(wavs: list[np.ndarray], feature_set: str, sample_rate: int) -> np.ndarray:
    """openSMILE `feature_set` functionals of each waveform -> (N, D) float32 (non-finite values -> 0),
    spread over the usable cores."""
    pool = _functionals_executor()
    if pool is not None and len(wavs) > 1:  # one waveform per task, spread over the cores
        return np.concatenate(list(pool.map(lambda w: _functionals_here([w], feature_set, sample_rate), wavs)))
    return _functionals_here(wavs, feature_set, sample_rate)


def _functionals_here(wavs: list[np.ndarray], feature_set: str, sample_rate: int) -> np.ndarray:
    """opensmile_functionals in the calling thread (each thread keeps its own openSMILE runner)."""
    runners = _smile_local.__dict__.setdefault("runners", {})
    run = runners.get((feature_set, sample_rate))
    if run is None:
        run = runners[(feature_set, sample_rate)] = _smile_runner(feature_set, sample_rate)
    rows = [run(np.asarray(w, dtype=np.float32)) for w in wavs]
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.nan_to_num(np.stack(rows).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


# The `opensmile` package's config file of each feature set (the paths its FeatureSet values name).
_SMILE_CONFIGS = {"ComParE_2016": "compare/ComParE_2016.conf", "eGeMAPSv02": "egemaps/v02/eGeMAPSv02.conf"}


def _smile_runner(feature_set: str, sample_rate: int) -> Any:
    """A callable waveform -> (D,) functionals, equal to the `opensmile` package's
    `Smile(feature_set, Functionals).process_signal(waveform, sample_rate)` row.

    It drives the package's own library and config files directly, configured once and reset
    between waveforms: importing `opensmile` itself costs ~1 s (pandas, audinterface) in every
    process that analyses speech, and each `process_signal` sets the library up again. Where
    the package's layout is not the one expected, the public `Smile` class is used instead
    (same numbers, slower); tests compare the two.
    """
    try:
        return _DirectSmile(feature_set, sample_rate)
    except (ImportError, OSError, AttributeError):  # FileNotFoundError is an OSError
        pass
    try:
        import opensmile
    except ImportError as exc:  # a core dependency; only a broken install lacks it
        raise AcousticFeaturesUnavailable(f"this voice model needs openSMILE features: pip install opensmile ({exc})") from None
    smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                            feature_level=opensmile.FeatureLevel.Functionals)
    return lambda wav: smile.process_signal(wav, sample_rate).to_numpy()[0]


def _opensmile_core_dir() -> str:
    """Where the installed `opensmile` package keeps its library wrapper and config files (not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("opensmile")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the opensmile package is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "core")


@lru_cache(maxsize=1)
def _opensmile_lib() -> Any:
    """The `opensmile` package's ctypes wrapper of libSMILEapi (core/lib.py: ctypes and numpy only)."""
    import importlib.util
    import sys

    name = "emofusion._opensmile_lib"
    spec = importlib.util.spec_from_file_location(name, os.path.join(_opensmile_core_dir(), "lib.py"))
    if spec is None or spec.loader is None:
        raise ImportError("opensmile/core/lib.py not found")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _DirectSmile:
    """openSMILE functionals of one feature set, set up once and reset after each waveform."""

    def __init__(self, feature_set: str, sample_rate: int):
        lib = _opensmile_lib()
        config_root = os.path.join(_opensmile_core_dir(), "config")
        config_file = os.path.join(config_root, _SMILE_CONFIGS[feature_set])
        if not os.path.exists(config_file):
            raise FileNotFoundError(config_file)
        options = {  # what opensmile.Smile passes for feature_level=Functionals and an in-memory signal
            "sink": os.path.join(config_root, "shared/standard_external_data_output_single.conf.inc"),
            "sinkLevel": "func",
            "bufferModeRbConf": os.path.join(config_root, "shared/BufferModeRb.conf.inc"),
            "frameModeFunctionalsConf": os.path.join(config_root, "shared/FrameModeFunctionals.conf.inc"),
            "source": os.path.join(config_root, "shared/standard_external_wave_input.conf.inc"),
            "sampleRate": sample_rate,
            "nBits": 16,
        }
        self._smile = lib.OpenSMILE()
        self._smile.initialize(config_file=config_file, options=options, loglevel=2, log_file=None, debug=False)
        self.num_features = self._smile.external_sink_get_num_elements("extsink")

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        # 16-bit samples exactly as opensmile.Smile makes them (scale by 32768, then cast)
        samples = np.array(wav, dtype=np.float32)
        samples *= 32768
        samples = samples.astype(np.int16)
        rows: list[np.ndarray] = []
        self._smile.external_sink_set_callback_ex("extsink", lambda data, meta: rows.append(np.ravel(data).copy()))
        self._smile.external_audio_source_write_data("extsource", bytes(samples))
        self._smile.external_audio_source_set_eoi("extsource")
        try:
            self._smile.run()
        finally:
            self._smile.reset()
        # a waveform too short for one frame gives no row: NaN, as opensmile.Smile fills it
        return rows[0] if rows else np.full(self.num_features, np.nan, dtype=np.float32)

    def __del__(self) -> None:
        # at interpreter exit the library's ctypes bindings may already be gone (freeing then
        # printed "Exception ignored ... smile_free"); the process returns the memory anyway
        smile = getattr(self, "_smile", None)
        if smile is not None and not sys.is_finalizing():
            smile.free()
