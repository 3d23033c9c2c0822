"""Predicted MOS: DNSMOS P.835 (SIG, BAK, OVRL) and P.808, from the ONNX models in the speechmos wheel.

DNSMOS scores 9.01 s windows; shorter clips are tiled to that length (its own convention), so a
clip costs the same (~1 s of CPU) whatever its length. It is reliable on flite/festival-like
voices and not on espeak-ng ones (measured), so compare rows, not absolute values.
"""

from __future__ import annotations

import os
from typing import Dict

import numpy as np


class DNSMOS:
    def __init__(self, num_threads: int = 1) -> None:
        import onnxruntime as ort
        import speechmos.dnsmos as dnsmos_module

        models = os.path.join(os.path.dirname(os.path.abspath(dnsmos_module.__file__)), "dnsmos_models")
        self.model = dnsmos_module.DNSMOS(os.path.join(models, "sig_bak_ovr.onnx"),
                                          os.path.join(models, "model_v8.onnx"))
        # speechmos opens its sessions with all cores; one thread per job keeps nj jobs from oversubscribing.
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        self.model.onnx_sess = ort.InferenceSession(os.path.join(models, "sig_bak_ovr.onnx"), options,
                                                    providers=["CPUExecutionProvider"])
        self.model.p808_onnx_sess = ort.InferenceSession(os.path.join(models, "model_v8.onnx"), options,
                                                         providers=["CPUExecutionProvider"])

    def __call__(self, waveform: np.ndarray, sample_rate: int = 16000) -> Dict[str, float]:
        if sample_rate != 16000:
            raise ValueError(f"DNSMOS needs 16 kHz audio, got {sample_rate}")
        wav = np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0)
        scores = self.model(wav, sample_rate, False)
        return {"mos_ovrl": float(scores["ovrl_mos"]), "mos_sig": float(scores["sig_mos"]),
                "mos_bak": float(scores["bak_mos"]), "mos_p808": float(scores["p808_mos"])}
