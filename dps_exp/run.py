"""`python -m dps_exp.run [overrides]`: compose the config, build the Run, execute it.

Returns the mean PSNR so that Hydra sweepers (Optuna) can optimise it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dps_exp.errors import UserError
from dps_exp.experiment import Run

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
log = logging.getLogger("dps_exp")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    try:
        run = Run.from_config(cfg, Path(hc.runtime.output_dir), name=hc.job.override_dirname or "default")
        summary = run.execute()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    psnr = summary["metrics"].get("psnr", {}).get("mean", float("nan"))
    log.info("%d images, mean PSNR %.2f dB, results in %s", summary["ok"], psnr, hc.runtime.output_dir)
    return psnr


if __name__ == "__main__":
    main()
