"""Differentially private fine-tuning (SPARTA, specs/other-papers.md §3): DP-SGD through Opacus
(``reprise.dp.engine``), SPARTA's mask selection as pure functions of the noisy scores and the density
(``reprise.dp.masks``), the masked parametrisation and models (``reprise.dp.models``), the three-phase
procedure and the baselines (``reprise.dp.finetune``), and the experiments (``reprise.dp.experiments``).
Importing the package does not import Opacus; the submodules do."""
