# CIFAR-10 / CIFAR-100 (python-version tarballs from cs.toronto.edu) for the mSAM and SPARTA papers at full scale
# only; never part of `all` by itself (an experiment's `inputs: {full: [...]}` pulls the archive in). The md5 that
# torchvision documents is checked (reprise.vision.cifar.CIFAR_ARCHIVES); the sha256 is recorded beside the file.
for _name, _file in (("cifar10", "cifar-10-python.tar.gz"), ("cifar100", "cifar-100-python.tar.gz")):

    rule:
        name:
            f"fetch_{_name}"
        output:
            archive=f"data/raw/cifar/{_file}",
            record=f"data/raw/cifar/{_file}.json",
        params:
            dataset=_name,
        log:
            f"logs/data/fetch_{_name}.log",
        localrule: True
        threads: 1
        resources:
            mem_mb=light_mem,
            runtime=lambda wc, attempt: 60 * attempt,
        conda:
            "../../envs/llm.yaml"
        script:
            "../scripts/fetch_cifar.py"
