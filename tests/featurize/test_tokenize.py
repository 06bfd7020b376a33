from mmer.featurize.tokenize import compound_parts, normalize_text, word_tokens


def test_clitics_are_split_like_the_penn_treebank():
    assert word_tokens("I can't, won't, don't. It's") == ["i", "ca", "n't", ",", "wo", "n't", ",", "do", "n't", ".", "it", "'s"]
    assert word_tokens("we're you've they'll I'm she'd") == ["we", "'re", "you", "'ve", "they", "'ll", "i", "'m", "she", "'d"]


def test_typographic_quotes_dashes_and_ellipsis_become_ascii_tokens():
    assert word_tokens("My company’s “plan”—no…") == ["my", "company", "'s", '"', "plan", '"', "--", "no", "..."]
    assert normalize_text("\ufeffCafé\u200b") == "café"


def test_numbers_abbreviations_and_compounds_stay_whole():
    assert word_tokens("The U.S. had 1,000 e-mails at 10:30, 3.5 each.") == [
        "the", "u.s.", "had", "1,000", "e-mails", "at", "10:30", ",", "3.5", "each", ".",
    ]


def test_a_final_period_is_its_own_token_and_other_symbols_are_single_tokens():
    assert word_tokens("Mr. Smith (42) paid $5!") == ["mr", ".", "smith", "(", "42", ")", "paid", "$", "5", "!"]


def test_empty_and_blank_text_have_no_tokens():
    assert word_tokens("") == []
    assert word_tokens("   \n") == []


def test_compound_parts_are_the_letter_and_digit_runs():
    assert compound_parts("y'know") == ["y", "know"]
    assert compound_parts("no-no-no") == ["no", "no", "no"]
