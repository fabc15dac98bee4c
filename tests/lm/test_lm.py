"""The LM route end to end on a tiny random Llama and real BasicMotions rows: sequence building, generation (KV
cache, batching, sampling, stop strings), FastV, training on answer tokens only, run folder round trip."""

import pytest
import torch

from polymodal.datasets import load_basicmotions
from polymodal.errors import PolymodalError
from polymodal.lm import fit_lm, load_lm_run
from polymodal.lm.fastv import fastv_prefill, prefill_flops
from polymodal.lm.generate import decode
from polymodal.lm.sequence import IGNORE, shift_loss
from polymodal.lm.tasks import motion_questions


@pytest.fixture(scope="module")
def vlm(tiny_lm, motion_encoders):
    qa = motion_questions(load_basicmotions("train"))
    return fit_lm(qa, encoders=motion_encoders, lm=tiny_lm, connector="pool_linear", epochs=2, batch_size=8,
                  lr=3e-3, modality_dropout=0.3, progress=False)


@pytest.fixture(scope="module")
def test_rows():
    return motion_questions(load_basicmotions("test"), held_out=True).iloc[::5].reset_index(drop=True)


def _packed(vlm, rows, absent=()):
    frame, tokens = vlm.features(rows, absent=absent)
    return vlm.mlm.packed(tokens, vlm.prompt_ids(list(frame["question"])))


def test_cached_equals_uncached_and_batch_equals_alone(vlm, test_rows):
    p = _packed(vlm, test_rows)
    m, tok, end = vlm.lm.model, vlm.lm.tokenizer, vlm.layout.end_id
    cached = decode(m, tok, p, end_id=end, max_new_tokens=6)
    plain = decode(m, tok, p, end_id=end, max_new_tokens=6, use_cache=False)
    assert cached.ids == plain.ids
    assert max(len(i) for i in cached.ids) > 0
    rows = test_rows.copy()
    rows.loc[0, "question"] = "what is the person doing ? answer in one word ."  # rows of different lengths
    batch = vlm.generate(rows, max_new_tokens=6)
    alone = [vlm.generate(rows.iloc[[i]], max_new_tokens=6)[0] for i in range(len(rows))]
    assert batch == alone
    assert len(set(_packed(vlm, rows).attention.sum(1).tolist())) > 1  # the batch really was padded


def test_no_modality_gives_the_lms_own_logits(vlm, test_rows):
    p = _packed(vlm, test_rows.iloc[:2], absent=("accel", "gyro"))
    assert not p.modal.any()
    ours = vlm.lm.model(inputs_embeds=p.embeds, attention_mask=p.attention, position_ids=p.positions).logits
    ids = [vlm.layout.before + vlm.layout.prompt_ids(vlm.lm.tokenizer, q) for q in test_rows["question"][:2]]
    for b, row in enumerate(ids):
        ref = vlm.lm.model(input_ids=torch.tensor([row])).logits[0]
        torch.testing.assert_close(ours[b, -len(row):], ref, atol=1e-5, rtol=1e-4)


def test_labels_cover_the_answer_only(vlm, test_rows):
    frame, tokens = vlm.features(test_rows.iloc[:3])
    answers = [vlm.layout.answer_ids(vlm.lm.tokenizer, a) for a in frame["answer"]]
    p = vlm.mlm.packed(tokens, vlm.prompt_ids(list(frame["question"])), answers)
    for b, a in enumerate(answers):
        assert p.labels[b][p.labels[b] != IGNORE].tolist() == a
    # each present modality contributes its marker + real tokens; a row without gyro has fewer modal tokens
    no_gyro = vlm.mlm.packed({"accel": tokens["accel"]}, vlm.prompt_ids(list(frame["question"])))
    assert no_gyro.modal.sum() < p.modal.sum()


def test_loss_on_the_kept_logits_equals_the_loss_on_all_of_them(vlm, test_rows):
    # the training loss runs the LM head on the last positions only (the answers, rows being left-padded)
    rows = test_rows.iloc[:4].copy()
    rows.loc[rows.index[0], "answer"] = "running and then walking"  # answers of different lengths
    frame, tokens = vlm.features(rows)
    prompts = vlm.prompt_ids(list(frame["question"]))
    answers = [vlm.layout.answer_ids(vlm.lm.tokenizer, a) for a in frame["answer"]]
    p = vlm.mlm.packed(tokens, prompts, answers)
    with torch.no_grad():
        full = vlm.lm.model(inputs_embeds=p.embeds, attention_mask=p.attention, position_ids=p.positions).logits
        reference = shift_loss(full, p.labels)
        kept = vlm.mlm.loss(tokens, prompts, answers)
    assert len(set(len(a) for a in answers)) > 1
    torch.testing.assert_close(kept, reference, atol=1e-5, rtol=1e-5)


def test_training_lowers_the_answer_loss_and_run_round_trips(vlm, test_rows, tmp_path):
    hist = vlm.info["training"]["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] + 1e-6
    before = vlm.generate(test_rows, max_new_tokens=4)
    vlm.save(tmp_path / "run")
    again = load_lm_run(tmp_path / "run")
    assert again.generate(test_rows, max_new_tokens=4) == before
    assert again.options["lm"]["sha256"] == vlm.lm.source["sha256"]
    ev = again.evaluate(test_rows, max_new_tokens=4)
    assert 0.0 <= ev["exact_match"] <= 1.0 and set(ev["subsets"]) == {"accel", "gyro", "accel+gyro", "none"}


def test_sampling_is_seeded_and_stop_strings_cut(vlm, test_rows):
    a = vlm.generate(test_rows, max_new_tokens=5, temperature=1.0, top_k=5, top_p=0.9, seed=3)
    b = vlm.generate(test_rows, max_new_tokens=5, temperature=1.0, top_k=5, top_p=0.9, seed=3)
    assert a == b
    greedy = vlm.generate(test_rows, max_new_tokens=6)
    word = next(w.split()[1] for w in greedy if len(w.split()) > 1)
    cut = vlm.generate(test_rows, max_new_tokens=6, stop=[word])
    assert all(word not in c for c in cut)


def test_fastv_and_budgets(vlm, test_rows):
    p = _packed(vlm, test_rows)
    m, tok, end = vlm.lm.model, vlm.lm.tokenizer, vlm.layout.end_id
    plain = decode(m, tok, p, end_id=end, max_new_tokens=5)
    zero = decode(m, tok, p, end_id=end, max_new_tokens=5,
                  prefill=lambda mm, pp: fastv_prefill(mm, pp, modal=pp.modal, layer=1, drop=0.0))
    assert zero.ids == plain.ids  # dropping nothing = the plain prefill, through the layer-by-layer path
    pruned = vlm.with_token_budget(fastv_layer=1, fastv_drop=0.5)
    batch = pruned.generate(test_rows, max_new_tokens=5)
    assert batch == [pruned.generate(test_rows.iloc[[i]], max_new_tokens=5)[0] for i in range(len(test_rows))]
    one = vlm.with_token_budget(count=1)
    assert one.mlm.packed(*_features_and_prompts(one, test_rows)).modal.sum(1).max() == 2  # 1 token x 2 modalities
    assert prefill_flops(m.config, [10] * 3) > prefill_flops(m.config, [10, 5, 5])
    with pytest.raises(PolymodalError, match="fastv_layer"):
        vlm.with_token_budget(fastv_drop=0.5)


def _features_and_prompts(model, rows):
    frame, tokens = model.features(rows)
    return tokens, model.prompt_ids(list(frame["question"]))


def test_bad_input_names_row_and_column(vlm, test_rows, tiny_lm_dir):
    rows = test_rows.copy()
    rows.loc[1, "question"] = None
    with pytest.raises(PolymodalError, match="row 1, column 'question'"):
        vlm.generate(rows)
    with pytest.raises(PolymodalError, match="sha256"):
        from polymodal.lm.source import load_lm

        load_lm(tiny_lm_dir, expect_sha256="0" * 64)
    with pytest.raises(PolymodalError, match="Did you mean 'smollm2-135m'"):
        from polymodal.lm.source import load_lm

        load_lm("smollm2-135")


def test_lora_stage_2_trains_adapters_only_and_round_trips(tiny_lm, motion_encoders, test_rows, tmp_path):
    qa = motion_questions(load_basicmotions("train"))
    base = {k: v.clone() for k, v in tiny_lm.model.state_dict().items()}
    vlm = fit_lm(qa, encoders=motion_encoders, lm=tiny_lm, connector="linear", epochs=1, batch_size=8, lr=3e-3,
                 lora={"r": 4}, progress=False)
    assert vlm.lm.model is not tiny_lm.model  # the LM passed in is copied, never changed
    assert all(torch.equal(v, tiny_lm.model.state_dict()[k]) for k, v in base.items())
    names = [k for k in vlm.lora.state_dict()]
    assert names and all("lora_" in k for k in names)
    assert any(v.abs().sum() > 0 for k, v in vlm.lora.state_dict().items() if "lora_B" in k)  # B starts at 0
    before = vlm.generate(test_rows, max_new_tokens=4)
    vlm.save(tmp_path / "lora-run")
    again = load_lm_run(tmp_path / "lora-run")
    assert again.generate(test_rows, max_new_tokens=4) == before


def test_stage_2_starts_from_the_stage_1_connectors(vlm, tmp_path):
    qa = motion_questions(load_basicmotions("train"))
    stage1 = {k: v.clone() for k, v in vlm.bridge.state_dict().items()}
    lm_before = {k: v.clone() for k, v in vlm.lm.model.state_dict().items()}
    # a vanishing learning rate: the connectors stay where stage 1 left them, so they must have been copied
    still = fit_lm(qa, init=vlm, lora={"r": 4}, epochs=1, batch_size=8, lr=1e-12, progress=False)
    assert still.options["connector"] == vlm.options["connector"] and still.budget == vlm.budget
    assert still.encoders is vlm.encoders and still.lora is not None and still.lm.model is not vlm.lm.model
    for k, v in still.bridge.state_dict().items():
        torch.testing.assert_close(v, stage1[k], atol=1e-8, rtol=0)
    moved = fit_lm(qa, init=vlm, lora={"r": 4}, epochs=1, batch_size=8, lr=3e-3, progress=False)
    assert any(not torch.allclose(v, stage1[k]) for k, v in moved.bridge.state_dict().items())
    # stage 1's run is untouched: its connectors and its LM (the LoRA run copies the LM)
    assert all(torch.equal(v, stage1[k]) for k, v in vlm.bridge.state_dict().items())
    assert all(torch.equal(v, lm_before[k]) for k, v in vlm.lm.model.state_dict().items())
    vlm.save(tmp_path / "stage1")
    from_folder = fit_lm(qa, init=tmp_path / "stage1", epochs=1, batch_size=8, lr=1e-12, progress=False)
    assert from_folder.info["init"] == str(tmp_path / "stage1")


def test_stage_2_refuses_an_init_it_cannot_continue(vlm, motion_encoders):
    qa = motion_questions(load_basicmotions("train"))
    with pytest.raises(PolymodalError, match="connector 'pool_linear'"):
        fit_lm(qa, init=vlm, connector="mlp", epochs=1, progress=False)
    with pytest.raises(PolymodalError, match="must be a trained LM run"):
        fit_lm(qa, init=motion_encoders, epochs=1, progress=False)
    with_lora = fit_lm(qa, init=vlm, lora={"r": 2}, epochs=1, batch_size=8, lr=1e-12, progress=False)
    with pytest.raises(PolymodalError, match="LoRA adapters already"):
        fit_lm(qa, init=with_lora, epochs=1, progress=False)
