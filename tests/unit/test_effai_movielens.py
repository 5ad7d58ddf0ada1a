"""effai.sub_kd_movielens: the ml-1m loader, the serialised prompt and label, the whole experiment
on tiny random Llama teacher/student models with SmolLM2's tokenizer, and the bad-input errors."""
import zipfile

import numpy as np
import pytest
import torch

from reprise.effai.movielens import (NO, YES, answer_token_ids, encode, fetch_movielens, load_movielens, scores,
                                     serialise, split_users, sub_kd_movielens, user_examples)
from reprise.io import ReproError

MOVIES = [(1, "Toy Story (1995)", "Animation|Children's|Comedy"), (2, "Jumanji (1995)", "Adventure"),
          (3, "Amélie (2001)", "Comedy|Romance"), (4, "Heat (1995)", "Action|Crime|Thriller"),
          (5, "Star Wars: Episode IV - A New Hope (1977)", "Action|Sci-Fi")]


def _zip(path, ratings, movies=MOVIES):
    """A zip laid out as GroupLens's ml-1m.zip: ml-1m/ratings.dat (ascii) and ml-1m/movies.dat (latin-1)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ml-1m/ratings.dat", "".join("::".join(map(str, r)) + "\n" for r in ratings))
        z.writestr("ml-1m/movies.dat", "".join("::".join(map(str, m)) + "\n" for m in movies).encode("latin-1"))
    return path


def test_loader_reads_both_files_and_the_latin1_titles(tmp_path):
    path = _zip(tmp_path / "ml-1m.zip", [(1, 1, 5, 100), (1, 3, 2, 50), (2, 5, 4, 7)])
    ratings, movies = load_movielens(path)
    assert list(ratings.columns) == ["user", "movie", "rating", "timestamp"] and len(ratings) == 3
    assert ratings.dtypes.map(lambda d: d.kind).eq("i").all()
    assert ratings.iloc[1].tolist() == [1, 3, 2, 50]
    assert movies.set_index("movie").title[3] == "Amélie (2001)"  # latin-1 byte 0xe9 decoded
    assert movies.set_index("movie").title[5] == "Star Wars: Episode IV - A New Hope (1977)"  # one ':' kept


def test_examples_take_the_last_rating_by_time_and_the_history_before_it(tmp_path):
    # user 1 rated out of file order; the timestamps decide; user 3 has one rating and is dropped
    ratings = [(1, 4, 3, 300), (1, 1, 4, 100), (1, 5, 5, 400), (1, 2, 2, 200), (1, 3, 4, 500),
               (2, 2, 3, 10), (2, 1, 5, 20), (3, 4, 5, 1)]
    r, m = load_movielens(_zip(tmp_path / "ml-1m.zip", ratings))
    ex = user_examples(r, m, history=3, threshold=4).set_index("user")
    assert list(ex.index) == [1, 2]
    one = ex.loc[1]
    assert one.movie == 3 and one.rating == 4 and one.label == 1
    assert one.prompt == ("User watched: Jumanji (1995) (2), Heat (1995) (3), Star Wars: Episode IV - A New Hope "
                          "(1977) (5); Will the user rate Amélie (2001) 4 or more? Answer:")
    assert one.history_mean == pytest.approx((2 + 3 + 5) / 3)
    two = ex.loc[2]
    assert two.label == 1 and two.prompt == serialise(["Jumanji (1995)"], [3], "Toy Story (1995)", 4)
    # the threshold moves the label and the question
    strict = user_examples(r, m, history=3, threshold=5).set_index("user")
    assert strict.loc[1].label == 0 and strict.loc[2].label == 1
    assert "rate Amélie (2001) 5 or more?" in strict.loc[1].prompt


def test_split_is_a_seeded_80_10_10_partition():
    users = np.arange(1, 101)
    tr, va, te = split_users(users, seed=3)
    assert (len(tr), len(va), len(te)) == (80, 10, 10)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == users.tolist()
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), split_users(users[::-1], seed=3)))
    assert not np.array_equal(tr, split_users(users, seed=4)[0])


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


def test_answers_are_single_tokens_and_padding_never_changes_a_score(tokenizer):
    from reprise.effai.tasks import tiny_llama

    yes, no = answer_token_ids(tokenizer)
    assert tokenizer.decode([yes]) == YES and tokenizer.decode([no]) == NO
    with pytest.raises(ReproError, match="tokens"):
        answer_token_ids(tokenizer, yes=" Yesterday-ish indeed")
    prompts = [serialise(["Heat (1995)"], [3], "Jumanji (1995)"),
               serialise(["Toy Story (1995)", "Heat (1995)"], [5, 1], "Amélie (2001)")]
    ids, mask, lengths = encode(tokenizer, prompts, [1, 0], yes, no)
    assert mask.sum(1).tolist() == [1, 1] and ids[0, lengths[0]] == yes and ids[1, lengths[1]] == no
    model = tiny_llama(len(tokenizer), 16, 32, layers=1, heads=2, seed=0)
    got = scores(model, ids, lengths, yes, no, 8)
    for i, p in enumerate(prompts):  # each prompt alone, unpadded
        alone = torch.as_tensor([tokenizer(p)["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=alone).logits[0, -1]
        assert got[i] == pytest.approx(float(logits[yes] - logits[no]), abs=1e-5)


def _dataset(path, n_users=60, seed=0):
    """Random users over the five movies with 2-5 random ratings each; the last (latest) one is 5 for
    odd users and 1 for even ones, so every split holds both labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        seen = rng.permutation(5)[: int(rng.integers(2, 6))] + 1
        rows += [(u, int(m), int(rng.integers(1, 6)), t) for t, m in enumerate(seen[:-1])]
        rows.append((u, int(seen[-1]), 5 if u % 2 else 1, len(seen)))
    return _zip(path, rows)


def _tiny_models(tmp_path, tokenizer):
    from reprise.effai.tasks import tiny_llama

    dirs = []
    for name, hidden, seed in (("teacher", 32, 1), ("student", 16, 2)):
        model = tiny_llama(len(tokenizer), hidden, 2 * hidden, layers=1, heads=2, seed=seed, max_positions=256)
        model.config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
        dirs.append(str(tmp_path / name))
    return dirs


def test_experiment_end_to_end_on_tiny_llamas(tmp_path, tokenizer, monkeypatch):
    from transformers import LlamaForCausalLM

    import reprise.effai.distill as distill

    teacher, student = _tiny_models(tmp_path, tokenizer)
    trained = {}
    real_train = distill.train

    def spy(model, *a, **k):  # keep each trained model, to compare it with its starting weights
        out = real_train(model, *a, **k)
        trained[k["name"]] = model
        return out

    monkeypatch.setattr(distill, "train", spy)
    params = {"data": str(_dataset(tmp_path / "ml-1m.zip")), "history": 2, "teacher": teacher, "student": student,
              "teacher_epochs": 1, "student_epochs": 1, "batch_size": 8, "teacher_lr": 1e-3, "student_lr": 1e-3,
              "device": "cpu"}
    rows = sub_kd_movielens(params, 0)
    assert list(rows[["model", "method"]].itertuples(index=False, name=None)) == [
        ("baseline", "history_mean"), ("baseline", "item_mean"), ("teacher", "zero_shot"), ("teacher", "sft"),
        ("student", "zero_shot"), ("student", "sft"), ("student", "fkl")]
    assert rows.auc.between(0, 1).all() and rows.val_auc.between(0, 1).all()
    assert (rows.train_users == 48).all() and (rows.test_users == 6).all()
    assert rows.experiment.eq("effai.sub_kd_movielens").all() and rows.seed.eq(0).all()
    start = LlamaForCausalLM.from_pretrained(student).requires_grad_(False)
    for name in ("student-sft", "student-fkl"):
        moved = max(float((a.detach() - b).abs().max()) for a, b in zip(trained[name].parameters(), start.parameters()))
        assert moved > 0, name
    # the SFT and FKL students start from the same weights but learn differently
    assert any(not torch.equal(a, b) for a, b in
               zip(trained["student-sft"].parameters(), trained["student-fkl"].parameters()))
    n_student = sum(p.numel() for p in start.parameters())
    assert rows.set_index(["model", "method"]).loc[("student", "fkl"), "params"] == n_student


def test_a_student_with_another_vocabulary_is_refused_before_training(tmp_path, tokenizer, monkeypatch):
    from reprise.effai.tasks import tiny_llama

    import reprise.effai.distill as distill

    teacher, _ = _tiny_models(tmp_path, tokenizer)
    other = tiny_llama(len(tokenizer) + 8, 16, 32, layers=1, heads=2, seed=3)
    other.save_pretrained(tmp_path / "other")
    tokenizer.save_pretrained(tmp_path / "other")
    monkeypatch.setattr(distill, "train", lambda *a, **k: pytest.fail("trained before the vocabulary check"))
    with pytest.raises(ReproError, match="one vocabulary"):
        sub_kd_movielens({"data": str(_dataset(tmp_path / "ml-1m.zip")), "teacher": teacher,
                          "student": str(tmp_path / "other"), "device": "cpu"}, 0)


@pytest.mark.parametrize("change, message", [
    ({"data": "nowhere/ml-1m.zip"}, "snakemake fetch_movielens"),
    ({"teacher": "no-such-model"}, "neither a key"),
    ({"history": 0}, "history"),
    ({"precision": "fp8"}, "precision"),
    ({"device": "tpu"}, "device"),
    ({"epochs": 3}, "epochs"),
])
def test_bad_params_are_refused_by_name(tmp_path, change, message):
    params = {"data": str(_dataset(tmp_path / "ml-1m.zip")), "teacher": str(tmp_path)} | change
    with pytest.raises(ReproError, match=message):
        sub_kd_movielens(params, 0)


def test_bad_archives_are_refused(tmp_path):
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ReproError, match="not a zip"):
        load_movielens(tmp_path / "junk.zip")
    with zipfile.ZipFile(tmp_path / "half.zip", "w") as z:
        z.writestr("ml-1m/movies.dat", "1::A (1990)::Drama\n")
    with pytest.raises(ReproError, match="no ratings.dat"):
        load_movielens(tmp_path / "half.zip")
    with pytest.raises(ReproError, match="line 1"):
        load_movielens(_zip(tmp_path / "short.zip", [(1, 1, 5)]))
    with pytest.raises(ReproError, match="missing from movies.dat"):
        load_movielens(_zip(tmp_path / "orphan.zip", [(1, 9, 5, 1)]))


def test_fetch_records_the_checksums_and_refuses_a_wrong_pin(tmp_path):
    import hashlib

    source = _zip(tmp_path / "source.zip", [(1, 1, 5, 1), (1, 2, 3, 2)])
    body = source.read_bytes()
    got = fetch_movielens(tmp_path / "raw" / "ml-1m.zip", url=source.as_uri())
    assert got == {"md5": hashlib.md5(body).hexdigest(), "sha256": hashlib.sha256(body).hexdigest()}
    assert (tmp_path / "raw" / "ml-1m.zip").read_bytes() == body
    with pytest.raises(ReproError, match="checksum mismatch"):
        fetch_movielens(tmp_path / "other.zip", url=source.as_uri(), sha256="0" * 64)
    assert not (tmp_path / "other.zip").exists()  # nothing kept after a mismatch
    with pytest.raises(ReproError, match="snakemake fetch_movielens"):
        fetch_movielens(tmp_path / "x.zip", url=(tmp_path / "absent.zip").as_uri())
    with pytest.raises(ReproError, match="64 hexadecimal"):
        fetch_movielens(tmp_path / "x.zip", sha256="abc")
