"""Unit tests of the torch-free training pieces (data.py, shards.py): python3 -m unittest."""
import json
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import gguf_to_portable  # noqa: E402
import shards  # noqa: E402


def enc(text):
    """Stand-in tokenizer: one id per byte."""
    return list(text.encode("utf-8"))


def enc_batch(texts):
    return [enc(t) for t in texts]


PROMPT = ("Some special magic numbers are hidden in the long text below. Read it.\n\n"
          "The sky was grey. One of the special magic numbers for calm-otter is: 1234567. "
          "Birds flew by. VAR ABCDE = 12345. The end came.\n\n"
          "Question: What is the special magic number for calm-otter mentioned in the text above?"
          "\nAnswer: The special magic number for calm-otter mentioned in the text above is")


class DataTest(unittest.TestCase):
    def test_split_sentences_like_load_haystack(self):
        self.assertEqual(data.split_sentences("A b.  C d!\nE f? g"), ["A b.", "C d!", "E f?", "g"])

    def test_needles_and_filler(self):
        self.assertEqual(data.needles_of(PROMPT),
                         ["One of the special magic numbers for calm-otter is: 1234567.", "VAR ABCDE = 12345."])
        self.assertEqual(data.filler_of(PROMPT), ["The sky was grey.", "Birds flew by.", "The end came."])

    def test_task_item_rebuild_keeps_needles_in_order_and_length(self):
        rec = {"task": "niah_single_number", "prompt": PROMPT, "answer": " 1234567."}
        item = data.TaskItem(rec, enc)
        hay = data.Haystack(["Lorem ipsum dolor sit.", "Amet consectetur.", "Adipiscing elit sed."], enc_batch)
        for seed in range(20):
            out = item.build(600, hay, random.Random(seed), enc)
            self.assertIsNotNone(out)
            ids, mask = out
            self.assertLessEqual(len(ids), 600)
            self.assertGreater(len(ids), 600 - 30)
            text = bytes(ids).decode()
            self.assertTrue(text.startswith("Some special magic numbers"))
            self.assertTrue(text.endswith("is 1234567."))
            a, b = text.index("calm-otter is: 1234567."), text.index("VAR ABCDE = 12345.")
            self.assertLess(a, b)
            self.assertEqual(bytes(i for i, m in zip(ids, mask) if m).decode(), " 1234567.")
            self.assertNotIn("The sky was grey", text)  # re-placed into the given haystack
            self.assertNotIn("  ", text.split("\n\nQuestion")[0])
        self.assertIsNone(item.build(50, hay, random.Random(0), enc))

    def test_assoc_segments_and_trim(self):
        rec = {"prompt": "Intro\nQ1 is A1. more\nQ2 is", "answer": " A2.", "answer_spans": [[11, 15]]}
        segs = data.assoc_segments(rec)
        self.assertEqual(segs, [("Intro\nQ1 is", False), (" A1.", True), (" more\nQ2 is", False), (" A2.", True)])
        ids, mask = data.tokenize_segments(segs, enc)
        self.assertEqual(len(ids), len(mask))
        t_ids, t_mask = data.trim_to_last_answer(ids, mask, 20)
        self.assertEqual(bytes(t_ids).decode(), "Intro\nQ1 is A1.")
        self.assertEqual(data.trim_to_last_answer(ids, mask, 5), ([], []))

    def test_mixer_sequences_have_exact_length(self):
        hay = data.Haystack(data.split_sentences("Alpha beta gamma. Delta epsilon. Zeta eta theta iota. " * 50), enc_batch)
        rec = {"task": "niah_single_number", "prompt": PROMPT, "answer": " 1234567."}
        assoc_rec = {"prompt": "Intro\nQ1 is A1. more\nQ2 is", "answer": " A2.", "answer_spans": [[11, 15]]}
        m = data.Mixer(seq_len=1024, weights={"assoc": 1, "tasks": 1, "text": 1}, bos=1, eos=2, encode=enc,
                       text=hay, fillers=hay, tasks=[data.TaskItem(rec, enc)],
                       assoc=[data.tokenize_segments(data.assoc_segments(assoc_rec), enc)],
                       filler_share=0.3, rng=random.Random(5))
        n_answers = 0
        for _ in range(30):
            ids, mask = m.sequence()
            self.assertEqual(len(ids), 1025)
            self.assertEqual(len(mask), 1025)
            self.assertEqual(ids[0], 1)
            n_answers += sum(mask)
        self.assertGreater(n_answers, 0)

    def test_mixer_task_weights_pick_tasks_by_weight(self):
        hay = data.Haystack(data.split_sentences("Alpha beta gamma. Delta epsilon. Zeta eta theta iota. " * 50), enc_batch)
        items = [data.TaskItem({"task": t, "prompt": PROMPT, "answer": " 1234567."}, enc)
                 for t in ("niah_single_number", "niah_multivalue") for _ in range(3)]
        drawn = {"niah_single_number": 0, "niah_multivalue": 0}
        m = data.Mixer(seq_len=256, weights={"tasks": 1}, bos=1, eos=2, encode=enc, text=hay, fillers=None,
                       tasks=items, assoc=[], filler_share=0, rng=random.Random(3),
                       task_weights={"niah_single_number": 1, "niah_multivalue": 3})
        orig = data.TaskItem.build

        def counting_build(item, *args):
            drawn[item.task] += 1
            return orig(item, *args)
        data.TaskItem.build = counting_build
        try:
            for _ in range(200):
                m.sequence()
        finally:
            data.TaskItem.build = orig
        share = drawn["niah_multivalue"] / (drawn["niah_multivalue"] + drawn["niah_single_number"])
        self.assertGreater(share, 0.65)
        self.assertLess(share, 0.85)
        with self.assertRaises(ValueError):  # a task with no items
            data.Mixer(seq_len=256, weights={"tasks": 1}, bos=1, eos=2, encode=enc, text=hay, fillers=None,
                       tasks=items, assoc=[], filler_share=0, rng=random.Random(3),
                       task_weights={"niah_single_uuid": 1})
        with self.assertRaises(ValueError):  # all weights zero
            data.Mixer(seq_len=256, weights={"tasks": 1}, bos=1, eos=2, encode=enc, text=hay, fillers=None,
                       tasks=items, assoc=[], filler_share=0, rng=random.Random(3),
                       task_weights={"niah_multivalue": 0})

    def test_mixer_task_len_frac_sets_the_shortest_task_document(self):
        hay = data.Haystack(data.split_sentences("Alpha beta gamma. Delta epsilon. Zeta eta theta iota. " * 200), enc_batch)
        items = [data.TaskItem({"task": "niah_single_number", "prompt": PROMPT, "answer": " 1234567."}, enc)]

        def first_doc_lengths(frac):
            m = data.Mixer(seq_len=1024, weights={"tasks": 1}, bos=1, eos=2, encode=enc, text=hay, fillers=None,
                           tasks=items, assoc=[], filler_share=0, rng=random.Random(5), task_len_frac=frac)
            out = []
            for _ in range(60):
                ids, _ = m.sequence()
                out.append(ids.index(2))  # the first EOS ends the first (task) document
            return out
        room = 1025 - 2
        full = first_doc_lengths(0.9)
        self.assertGreaterEqual(min(full), int(0.9 * room) - 40)  # the haystack fits whole sentences
        self.assertLess(min(first_doc_lengths(0.25)), int(0.5 * room))
        with self.assertRaises(ValueError):
            data.Mixer(seq_len=64, weights={"tasks": 1}, bos=1, eos=2, encode=enc, text=hay, fillers=None,
                       tasks=items, assoc=[], filler_share=0, rng=random.Random(0), task_len_frac=0)

    def test_mixer_refuses_a_missing_source(self):
        hay = data.Haystack(["A b."], enc_batch)
        with self.assertRaises(ValueError):
            data.Mixer(seq_len=64, weights={"tasks": 1}, bos=1, eos=2, encode=enc, text=hay, fillers=None,
                       tasks=[], assoc=[], filler_share=0, rng=random.Random(0))


# GPT-2's split regex with ASCII classes; one id per piece: a stand-in for byte-level BPE whose
# pieces never merge across the split, so ids assembled from parts must equal ids of the text.
GPT2_SPLIT = __import__("re").compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


class PieceTokenizer:
    def __init__(self):
        self.ids, self.pieces = {}, []

    def encode(self, text):
        out = []
        for p in GPT2_SPLIT.findall(text):
            if p not in self.ids:
                self.ids[p] = len(self.pieces)
                self.pieces.append(p)
            out.append(self.ids[p])
        return out

    def decode(self, ids):
        return "".join(self.pieces[i] for i in ids)


class TokenLevelAssemblyTest(unittest.TestCase):
    def test_assembled_ids_equal_the_ids_of_the_assembled_text(self):
        tok = PieceTokenizer()
        rec = {"task": "variable_tracking", "prompt": PROMPT, "answer": " ABCDE."}
        item = data.TaskItem(rec, tok.encode)
        hay = data.Haystack(data.split_sentences("In the beginning God created the heaven. And the earth "
                                                 "was without form, and void! Was it? Yes. " * 30),
                            lambda xs: [tok.encode(x) for x in xs])
        for seed in range(30):
            ids, mask = item.build(300, hay, random.Random(seed), tok.encode)
            text = tok.decode(ids)
            self.assertEqual(tok.encode(text), ids, text)
            self.assertIn("\n\n", text)
            answer = tok.decode([i for i, m in zip(ids, mask) if m])
            self.assertEqual(answer, " ABCDE.")


    def test_assoc_segments_tokenize_like_the_whole_text(self):
        tok = PieceTokenizer()
        q = ("\nQuestion: What is the special magic {k} for {key} mentioned in the text above?\n"
             "Answer: The special magic {k} for {key} mentioned in the text above is")
        text = "Special magic values are listed below.\nOne of the special magic uuids for odd-fox is: 8c1f-4a2b."
        text += "\nOne of the special magic numbers for calm-owl is: 1234567."
        spans = []
        for key, kind, value in [("odd-fox", "uuid", "8c1f-4a2b"), ("calm-owl", "number", "1234567")]:
            text += q.format(k=kind, key=key)
            spans.append([len(text), len(text) + len(value) + 2])
            text += " " + value + "."
        rec = {"prompt": text[:spans[-1][0]], "answer": text[spans[-1][0]:], "answer_spans": spans[:-1]}
        ids, mask = data.tokenize_segments(data.assoc_segments(rec), tok.encode)
        self.assertEqual(ids, tok.encode(text))
        self.assertEqual(tok.decode([i for i, m in zip(ids, mask) if m]), " 8c1f-4a2b. 1234567.")


class ShardTest(unittest.TestCase):
    def test_plan_shards_respects_the_limit(self):
        sizes = [("a", 6), ("b", 6), ("c", 3), ("d", 10)]
        self.assertEqual(shards.plan_shards(sizes, 12), [["a", "b"], ["c"], ["d"]])
        with self.assertRaises(ValueError):
            shards.plan_shards([("big", 13)], 12)
        names = shards.shard_file_names(3)
        self.assertEqual(names[0], "model-00001-of-00003.safetensors")
        idx = shards.index_json([["a", "b"], ["c"]], shards.shard_file_names(2), 15)
        self.assertEqual(idx["weight_map"]["c"], "model-00002-of-00002.safetensors")
        self.assertEqual(shards.shard_file_names(1), ["model.safetensors"])

    def test_recipe_model_fits_the_gguf_limit(self):
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "recipe.json")) as f:
            r = json.load(f)
        m = r["model"]
        q, kv = m["n_heads"] * m["head_dim"], m["n_kv_heads"] * m["head_dim"]
        self.assertEqual(m["n_heads"], 4 * m["n_kv_heads"])  # GQA 4:1 (issue 6)
        self.assertIn(m["head_dim"], (64, 128))
        self.assertGreaterEqual(m["rope_theta"], 100000)
        per_layer = 2 * m["dim"] + m["dim"] * (q + 2 * kv) + q * m["dim"] + 3 * m["dim"] * m["ffn_dim"]
        norms = m["n_layers"] * 2 * m["dim"] + m["dim"]
        n = m["n_layers"] * per_layer + m["vocab_size"] * m["dim"] + m["dim"]
        size = shards.gguf_bytes_estimate(n, norms, r["export"]["gguf_type"])
        self.assertLess(size + 512 * 1024, 16 * shards.MIB, f"{n} parameters -> {size} bytes")
        self.assertGreaterEqual(max(s["seq_len"] for s in r["stages"]), 8192)
        self.assertTrue(all(s["minutes"] > 0 for s in r["stages"]))

    def test_eval_summary_merges_runs_by_label_and_skips_cut_lines(self):
        import tempfile
        import eval_model
        with tempfile.TemporaryDirectory() as work:
            def items(name, rows, tail=""):
                os.makedirs(os.path.join(work, name))
                with open(os.path.join(work, name, "items.jsonl"), "w") as f:
                    for task, score, kv in rows:
                        f.write(json.dumps({"task": task, "ctx": 8192, "score": score, "kv_fraction": kv,
                                            "prefill_ms": 10.0}) + "\n")
                    f.write(tail)  # a line cut off at the deadline
            items("dense-main", [("niah_multikey", 1.0, 1.0), ("niah_multikey", 0.0, 1.0), ("vt", 1.0, 1.0)])
            items("tca", [("niah_multikey", 1.0, 0.2), ("vt", 0.0, 0.3)], tail='{"task": "vt", "ct')
            jobs = [{"name": "dense-main", "label": "dense"}, {"name": "tca", "label": "tca tau0.9"},
                    {"name": "never-ran", "label": "oracle"}]
            rows, avg = eval_model.summarize(jobs, work)
        by = {(r["task"], r["policy"]): r for r in rows}
        self.assertEqual(by[("niah_multikey", "dense")]["accuracy"], 0.5)
        self.assertEqual(by[("niah_multikey", "dense")]["n_samples"], 2)
        self.assertEqual(by[("vt", "tca tau0.9")]["kv_fraction"], 0.3)
        self.assertEqual(len(rows), 4)
        a = {x["policy"]: x for x in avg}
        self.assertEqual(a["dense"]["mean_accuracy"], 0.75)  # mean over tasks, not items
        self.assertEqual(a["tca tau0.9"]["mean_kv_fraction"], 0.25)
        self.assertNotIn("oracle", a)
        md = eval_model.markdown(rows, avg, {"model": "m", "haystack": "h", "seed": 0, "block_size": 64,
                                             "local_window": 1024})
        self.assertIn("| 8192 | tca tau0.9 | 2 | 2 | 0.500 | 0.250 |", md)


    def test_eval_summary_splits_a_multi_policy_run_and_averages_attention_stats(self):
        import tempfile
        import eval_model
        with tempfile.TemporaryDirectory() as work:
            os.makedirs(os.path.join(work, "fidelity"))
            with open(os.path.join(work, "fidelity", "items.jsonl"), "w") as f:
                for policy, recall in (("tca:stats", [0.9, 0.7]), ("tca:stats", [0.7, 0.5]), ("snapkv:stats", [0.8, 0.6])):
                    f.write(json.dumps({"task": "vt", "ctx": 8192, "policy": policy, "score": 1.0, "kv_fraction": 0.3,
                                        "attn_recall": recall, "attn_prefill_error": [0.1, 0.2],
                                        "attn_decode_error": [0.05, 0.25]}) + "\n")
            jobs = [{"name": "fidelity", "label": " (kv 100)", "attention": "tca,snapkv"}]
            rows, avg = eval_model.summarize(jobs, work)
        by = {r["policy"]: r for r in rows}
        self.assertEqual(set(by), {"tca:stats (kv 100)", "snapkv:stats (kv 100)"})
        self.assertEqual(by["tca:stats (kv 100)"]["n_samples"], 2)
        self.assertEqual(by["tca:stats (kv 100)"]["attn_recall_by_layer"], [0.8, 0.6])
        md = eval_model.markdown(rows, avg, {"model": "m", "haystack": "h", "seed": 0, "block_size": 64,
                                             "local_window": 1024})
        self.assertIn("| 8192 | tca:stats (kv 100) | 0.7000 | 0.1500 | 0.1500 | 0.800 0.600 | 0.050 0.250 |", md)


class GgufToPortableTest(unittest.TestCase):
    ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def test_unpermute_inverts_the_converters_rope_permutation(self):
        from array import array
        heads, hd, row = 2, 8, 3
        hf = array("f", range(heads * hd * row))
        gguf = array("f", bytes(4 * len(hf)))  # tca convert's permute_rope_rows
        for h in range(heads):
            for i in range(hd // 2):
                for j in range(2):
                    dst, src = h * hd + 2 * i + j, h * hd + j * (hd // 2) + i
                    gguf[dst * row:(dst + 1) * row] = hf[src * row:(src + 1) * row]
        self.assertEqual(list(gguf_to_portable.unpermute_rope_rows(gguf, heads, hd, row)), list(hf))

    def test_q8_0_block_dequantizes_exactly(self):
        import struct
        block = struct.pack("<e", 0.5) + struct.pack("<32b", *range(-16, 16))
        self.assertEqual(list(gguf_to_portable.dequantize(gguf_to_portable.Q8_0, block)),
                         [0.5 * q for q in range(-16, 16)])

    def test_shipped_model_gives_back_its_tokenizer_and_shapes(self):
        import hashlib
        import tempfile
        gguf = os.path.join(self.ROOT, "models", "tca-long-14m.q8_0.gguf")
        manifest = os.path.join(self.ROOT, "models", "tca-long-14m.manifest.json")
        if not os.path.exists(gguf):
            self.skipTest("no shipped model")
        with tempfile.TemporaryDirectory() as out:
            state = gguf_to_portable.convert(gguf, out, 7)
            self.assertEqual(state["stage"], 7)
            with open(os.path.join(out, "tokenizer.json"), "rb") as f:
                sha = hashlib.sha256(f.read()).hexdigest()
            with open(manifest) as f:
                self.assertEqual(sha, json.load(f)["tokenizer_sha256"])
            with open(os.path.join(out, "model.safetensors"), "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(n))
            with open(os.path.join(out, "config.json")) as f:
                cfg = json.load(f)
            self.assertEqual(header["model.layers.0.self_attn.q_proj.weight"]["shape"],
                             [cfg["num_attention_heads"] * cfg["head_dim"], cfg["hidden_size"]])
            self.assertEqual(header["model.embed_tokens.weight"]["shape"], [cfg["vocab_size"], cfg["hidden_size"]])
            self.assertNotIn("lm_head.weight", header)  # tied

    def test_not_a_gguf_is_refused(self):
        import tempfile
        with tempfile.NamedTemporaryFile(suffix=".gguf") as f:
            f.write(b"NOPE" + bytes(20))
            f.flush()
            with self.assertRaisesRegex(gguf_to_portable.GgufError, "not a GGUF file"):
                gguf_to_portable.read_gguf(f.name)


if __name__ == "__main__":
    unittest.main()
