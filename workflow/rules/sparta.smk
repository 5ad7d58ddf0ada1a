# SPARTA (config/papers/sparta.yaml): the ResNet-18-GN pretrained on CIFAR-100 that the official code expects
# (checkpoints/resnet18_cifar100_gn.pt) is not released, so it is re-pretrained here non-privately
# (reprise.dp.pretrain; specs/other-papers.md §9.2) and its rows are labelled "re-pretrained". Full scale only:
# the experiment's `inputs: {full: [...]}` pulls it in; smoke never builds it.
rule sparta_pretrain_resnet18_gn:
    input:
        archive="data/raw/cifar/cifar-100-python.tar.gz",
    output:
        checkpoint="runs/sparta/resnet18_gn_cifar100.pt",
        record="runs/sparta/resnet18_gn_cifar100.json",
    log:
        "logs/sparta/pretrain_resnet18_gn.log",
    threads: config["threads"]
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
        gpu=GPU,
    conda:
        "../../envs/llm.yaml"
    shell:
        "PYTHONPATH=src python -m reprise.dp.pretrain --archive {input.archive} --out {output.checkpoint} "
        "--device {config[driver][device]} > {log} 2>&1"
