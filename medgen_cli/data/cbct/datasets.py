"""The case files of one split as a torch dataset (the dif-gaussian family trains on it)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from medgen_cli.data.cbct.io import list_cases, read_case
from medgen_cli.errors import MedgenError


class CBCTCaseDataset(Dataset):
    """Case files of one split as dicts of tensors (volume, all projections, angles)."""

    def __init__(self, directory: Path, cache: bool = True) -> None:
        self.files = list_cases(directory)
        self.cache: dict[int, dict[str, torch.Tensor]] | None = {} if cache else None
        self.geometry = read_case(self.files[0]).geometry

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        case = read_case(self.files[i])
        if case.geometry != self.geometry:
            raise MedgenError(f"{self.files[i]} has another geometry than {self.files[0]}",
                              "make every case of a dataset with the same geometry")
        item = {"volume": torch.from_numpy(case.volume), "projections": torch.from_numpy(case.projections),
                "angles": torch.from_numpy(case.angles).float()}
        if self.cache is not None:
            self.cache[i] = item
        return item
