"""The NVML sampler: utilization, clocks, power, temperature, throttling and energy of the
trial's own GPU (found by UUID) while the measured steps run."""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


# --- NVML -------------------------------------------------------------------------------------


def _nvml():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception as exc:  # no library, no driver, no GPU: all the same here
        log.debug("NVML unavailable: %s", exc)
        return None


def nvml_handle_for_uuid(uuid: str | None):
    """The NVML handle of the CUDA device with this UUID.

    NVML numbers devices by PCI order and ignores CUDA_VISIBLE_DEVICES, so a trial that Ray
    gave "GPU 3" as cuda:0 must look its device up by UUID, never by index.
    """
    nv = _nvml()
    if nv is None or not uuid:
        return nv, None
    want = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
    try:
        return nv, nv.nvmlDeviceGetHandleByUUID(want)
    except Exception as exc:
        log.warning("NVML: no device with UUID %s (%s)", want, exc)
        return nv, None


# NVML clock-event ("throttle") reason bits, from nvml.h (nvmlClocksEventReason*).
_THROTTLE_BITS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def throttle_names(mask: int) -> list[str]:
    return [name for bit, name in _THROTTLE_BITS.items() if mask & bit]


class NvmlSampler:
    """Samples one device in a background thread between ``start()`` and ``stop()``.

    Every reading is optional: a call that fails (or no NVML at all) leaves its field None.
    ``stop()`` returns the summary metrics; the energy is the delta of NVML's total-energy
    counter (mJ since driver load), which is exact rather than integrated from power samples.
    """

    def __init__(self, uuid: str | None, interval_s: float = 0.05):
        self.nv, self.handle = nvml_handle_for_uuid(uuid)
        self.interval_s = interval_s
        self.samples: list[dict[str, float | None]] = []
        self.throttle_mask = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._energy0: float | None = None

    @property
    def available(self) -> bool:
        return self.handle is not None

    def _call(self, fn: str, *args):
        try:
            return getattr(self.nv, fn)(self.handle, *args)
        except Exception:
            return None

    def _sample(self) -> None:
        nv = self.nv
        util = self._call("nvmlDeviceGetUtilizationRates")
        mem = self._call("nvmlDeviceGetMemoryInfo")
        power = self._call("nvmlDeviceGetPowerUsage")  # mW
        clock = self._call("nvmlDeviceGetClockInfo", nv.NVML_CLOCK_SM)
        temp = self._call("nvmlDeviceGetTemperature", nv.NVML_TEMPERATURE_GPU)
        reasons = self._call("nvmlDeviceGetCurrentClocksEventReasons")
        if reasons is None:
            reasons = self._call("nvmlDeviceGetCurrentClocksThrottleReasons")
        if reasons:
            self.throttle_mask |= int(reasons)
        self.samples.append(
            {
                "gpu_util": util.gpu if util is not None else None,
                "mem_util": util.memory if util is not None else None,
                "used_bytes": mem.used if mem is not None else None,
                "total_bytes": mem.total if mem is not None else None,
                "power_w": power / 1000.0 if power is not None else None,
                "sm_mhz": clock,
                "temp_c": temp,
            }
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        if not self.available:
            return
        self._energy0 = self._call("nvmlDeviceGetTotalEnergyConsumption")
        self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        if not self.available or self._thread is None:
            return {}
        self._stop.set()
        self._thread.join()
        self._sample()  # one reading at the very end too
        energy1 = self._call("nvmlDeviceGetTotalEnergyConsumption")
        energy_j = None
        if self._energy0 is not None and energy1 is not None:
            energy_j = (energy1 - self._energy0) / 1000.0
        return summarize_nvml(self.samples, energy_j, self.throttle_mask)


def summarize_nvml(
    samples: list[dict[str, float | None]], energy_j: float | None, throttle_mask: int
) -> dict[str, Any]:
    """Pure: NVML samples -> metrics (means, maxima), in the record's names and units."""

    def vals(key):
        return [s[key] for s in samples if s.get(key) is not None]

    def mean(key):
        v = vals(key)
        return sum(v) / len(v) if v else None

    used, totals = vals("used_bytes"), vals("total_bytes")
    temps = vals("temp_c")
    # gpu_idle is set whenever the sampler catches the GPU between kernels; not a throttle.
    names = [n for n in throttle_names(throttle_mask) if n != "gpu_idle"]
    return {
        "gpu_util_pct_mean": mean("gpu_util"),
        "mem_util_pct_mean": mean("mem_util"),
        "sm_clock_mhz_mean": mean("sm_mhz"),
        "power_w_mean": mean("power_w"),
        "temperature_c_max": max(temps) if temps else None,
        "nvml_peak_used_gib": max(used) / 2**30 if used else None,
        "nvml_total_gib": max(totals) / 2**30 if totals else None,
        "energy_j": energy_j,
        "throttle_reasons": ",".join(names) if names else "",
        "nvml_samples": len(samples),
    }
