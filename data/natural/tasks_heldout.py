"""A second set of small programming tasks with tests, held out: written after the selection rules
(``ppl+checks`` included) were designed on the first set (``tasks.py``), and never used to tune
them. Same shape as ``tasks.py``: a function name, its parameters, what it does, and test cases
(arguments, expected result) as JSON-compatible literals. The expected results are computed here
by a reference implementation of each task, so no hand-typed expectation can be wrong.
"""

# ruff: noqa: E501  (a table: each task's name, parameters and description on one line, its reference and cases on the next)
from __future__ import annotations


def _cases(reference, arguments):
    return [(args, reference(*args)) for args in arguments]


def _run_lengths(text):
    out = []
    for char in text:
        if out and out[-1][0] == char:
            out[-1][1] += 1
        else:
            out.append([char, 1])
    return out


def _is_armstrong(n):
    digits = str(n)
    return sum(int(d) ** len(digits) for d in digits) == n


def _spiral_sum(n):
    return sum(range(1, n * n + 1)) if n > 0 else 0


_SPECS = [
    ("count_negatives", "numbers", "returns how many integers in the list `numbers` are below zero",
     lambda numbers: sum(1 for x in numbers if x < 0), [([1, -2, -3, 4],), ([],), ([-1],), ([0, 5],)]),
    ("double_each", "numbers", "returns a new list with every integer of `numbers` multiplied by two",
     lambda numbers: [2 * x for x in numbers], [([1, 2, 3],), ([],), ([-4, 0],)]),
    ("last_n", "items, n", "returns the last `n` elements of the list `items` (all of them if `n` is larger)",
     lambda items, n: items[-n:] if n > 0 else [], [([1, 2, 3, 4], 2), ([1], 3), ([5, 6], 0)]),
    ("first_n", "items, n", "returns the first `n` elements of the list `items`",
     lambda items, n: items[:n], [([1, 2, 3, 4], 2), ([1], 3), ([5, 6], 0)]),
    ("count_zeros", "numbers", "returns how many zeros the list of integers `numbers` contains",
     lambda numbers: numbers.count(0), [([0, 1, 0],), ([],), ([5, 6],)]),
    ("sum_of_cubes", "n", "returns 1**3 + 2**3 + ... + n**3 for a non-negative integer `n`",
     lambda n: sum(i**3 for i in range(1, n + 1)), [(0,), (1,), (3,), (5,)]),
    ("is_vowel", "char", "returns True when the one-character string `char` is a vowel (a, e, i, o, u, either case)",
     lambda char: char.lower() in "aeiou", [("a",), ("E",), ("x",), ("Y",)]),
    ("count_spaces", "text", "returns how many space characters the string `text` contains",
     lambda text: text.count(" "), [("a b c",), ("",), ("  x ",)]),
    ("remove_spaces", "text", "returns the string `text` with every space character removed",
     lambda text: text.replace(" ", ""), [("a b c",), ("",), (" hello  world ",)]),
    ("max_of_three", "a, b, c", "returns the largest of the three integers `a`, `b` and `c`",
     lambda a, b, c: max(a, b, c), [(1, 2, 3), (9, -1, 4), (5, 5, 2), (-3, -7, -1)]),
    ("min_of_three", "a, b, c", "returns the smallest of the three integers `a`, `b` and `c`",
     lambda a, b, c: min(a, b, c), [(1, 2, 3), (9, -1, 4), (5, 5, 2), (-3, -7, -1)]),
    ("is_divisible", "n, d", "returns True when the integer `n` is divisible by the non-zero integer `d`",
     lambda n, d: n % d == 0, [(10, 5), (7, 2), (0, 3), (-9, 3)]),
    ("count_multiples", "numbers, k", "returns how many integers in `numbers` are multiples of the positive integer `k`",
     lambda numbers, k: sum(1 for x in numbers if x % k == 0), [([1, 2, 3, 4, 6], 2), ([], 3), ([5, 7], 5)]),
    ("to_upper_list", "words", "returns the list of strings `words` with each string upper-cased",
     lambda words: [w.upper() for w in words], [(["ab", "Cd"],), ([],), (["x"],)]),
    ("longest_string_length", "words", "returns the length of the longest string in the list `words` (0 when empty)",
     lambda words: max((len(w) for w in words), default=0), [(["a", "abc", "ab"],), ([],), (["", "x"],)]),
    ("shortest_word", "sentence", "returns the shortest word of the space-separated string `sentence` (the first one on a tie)",
     lambda sentence: min(sentence.split(), key=len), [("the quick brown fox",), ("hello world",), ("a bb c",)]),
    ("sum_of_evens_up_to", "n", "returns the sum of the even integers from 0 to `n` inclusive",
     lambda n: sum(i for i in range(0, n + 1, 2)), [(0,), (4,), (7,), (10,)]),
    ("count_digits", "n", "returns how many decimal digits the non-negative integer `n` has",
     lambda n: len(str(n)), [(0,), (7,), (12345,), (1000,)]),
    ("reverse_number", "n", "returns the digits of the non-negative integer `n` in reverse order, as an integer",
     lambda n: int(str(n)[::-1]), [(123,), (0,), (1200,), (7,)]),
    ("is_armstrong", "n", "returns True when the non-negative integer `n` equals the sum of its digits each raised to the number of digits",
     _is_armstrong, [(153,), (370,), (10,), (9,), (100,)]),
    ("run_lengths", "text", "returns the run-length encoding of the string `text` as a list of [character, count] pairs",
     _run_lengths, [("aaabcc",), ("",), ("abc",)]),
    ("positions_of", "items, value", "returns the list of indexes at which `value` occurs in the list `items`",
     lambda items, value: [i for i, x in enumerate(items) if x == value], [([1, 2, 1, 3, 1], 1), ([], 5), ([4, 5], 6)]),
    ("replace_value", "items, old, new", "returns a copy of the list `items` with every `old` replaced by `new`",
     lambda items, old, new: [new if x == old else x for x in items], [([1, 2, 1], 1, 9), ([], 1, 2), ([3, 4], 5, 6)]),
    ("sum_first_last", "numbers", "returns the sum of the first and the last element of the non-empty list `numbers`",
     lambda numbers: numbers[0] + numbers[-1], [([1, 2, 3],), ([5],), ([-1, 4, 10],)]),
    ("all_positive", "numbers", "returns True when every integer in `numbers` is greater than zero (True for an empty list)",
     lambda numbers: all(x > 0 for x in numbers), [([1, 2],), ([],), ([3, 0],), ([-1],)]),
    ("any_negative", "numbers", "returns True when at least one integer in `numbers` is below zero",
     lambda numbers: any(x < 0 for x in numbers), [([1, 2],), ([],), ([3, -1],)]),
    ("count_greater_than", "numbers, limit", "returns how many integers in `numbers` are greater than `limit`",
     lambda numbers, limit: sum(1 for x in numbers if x > limit), [([1, 5, 9], 4), ([], 0), ([2, 2], 2)]),
    ("square_of_sum", "numbers", "returns the square of the sum of the integers in `numbers`",
     lambda numbers: sum(numbers) ** 2, [([1, 2, 3],), ([],), ([-2, 2],)]),
    ("difference_of_squares", "n", "returns (1 + ... + n)**2 minus (1**2 + ... + n**2) for a non-negative integer `n`",
     lambda n: sum(range(1, n + 1)) ** 2 - sum(i * i for i in range(1, n + 1)), [(0,), (1,), (5,), (10,)]),
    ("spiral_sum", "n", "returns the sum of the numbers 1 to n*n (the cells of an n-by-n spiral), 0 for n = 0",
     _spiral_sum, [(0,), (1,), (3,)]),
    ("every_other", "items", "returns the elements of the list `items` at even indexes (0, 2, 4, ...)",
     lambda items: items[::2], [([1, 2, 3, 4, 5],), ([],), (["a", "b"],)]),
    ("swap_first_last", "items", "returns a copy of the list `items` with its first and last elements swapped",
     lambda items: items[-1:] + items[1:-1] + items[:1] if len(items) > 1 else list(items), [([1, 2, 3],), ([5],), ([],), ([1, 2],)]),
    ("is_sorted_descending", "numbers", "returns True when the list `numbers` is in non-increasing order",
     lambda numbers: all(a >= b for a, b in zip(numbers, numbers[1:], strict=False)), [([3, 2, 2, 1],), ([],), ([1, 2],)]),
    ("count_letters", "text", "returns how many alphabetic characters the string `text` contains",
     lambda text: sum(1 for c in text if c.isalpha()), [("ab1 c!",), ("",), ("123",)]),
    ("count_digit_chars", "text", "returns how many characters of the string `text` are the digits 0-9",
     lambda text: sum(1 for c in text if c in "0123456789"), [("a1b22",), ("",), ("xyz",)]),
    ("first_word", "sentence", "returns the first word of the space-separated string `sentence` ('' when there is none)",
     lambda sentence: sentence.split()[0] if sentence.split() else "", [("hello big world",), ("",), ("one",)]),
    ("last_word", "sentence", "returns the last word of the space-separated string `sentence` ('' when there is none)",
     lambda sentence: sentence.split()[-1] if sentence.split() else "", [("hello big world",), ("",), ("one",)]),
    ("initials", "name", "returns the upper-case first letters of the words of the string `name`, joined without spaces",
     lambda name: "".join(w[0].upper() for w in name.split()), [("ada lovelace",), ("Grace Brewster Hopper",), ("x",)]),
    ("count_a", "text", "returns how many times the letter 'a' (either case) occurs in the string `text`",
     lambda text: text.lower().count("a"), [("Banana",), ("",), ("xyz",)]),
    ("double_letters", "text", "returns the string `text` with every character repeated twice",
     lambda text: "".join(c * 2 for c in text), [("abc",), ("",), ("a b",)]),
    ("sum_of_list_lengths", "lists", "returns the total number of elements in the list of lists `lists`",
     lambda lists: sum(len(x) for x in lists), [([[1, 2], [3]],), ([],), ([[], [1]],)]),
    ("max_length_list", "lists", "returns the longest list in the non-empty list of lists `lists` (the first one on a tie)",
     lambda lists: max(lists, key=len), [([[1, 2], [3]],), ([[1], [2, 3, 4], [5, 6, 7]],), ([[]],)]),
    ("increment_all", "numbers", "returns a new list with 1 added to every integer of `numbers`",
     lambda numbers: [x + 1 for x in numbers], [([1, 2],), ([],), ([-1],)]),
    ("halve_evens", "numbers", "returns the even integers of `numbers`, each divided by two, in order",
     lambda numbers: [x // 2 for x in numbers if x % 2 == 0], [([1, 2, 4, 5],), ([],), ([3],)]),
    ("product_of_digits", "n", "returns the product of the decimal digits of the non-negative integer `n`",
     lambda n: __import__("math").prod(int(d) for d in str(n)), [(123,), (0,), (9,), (405,)]),
    ("is_perfect_square", "n", "returns True when the non-negative integer `n` is the square of an integer",
     lambda n: int(n**0.5) ** 2 == n or (int(n**0.5) + 1) ** 2 == n, [(0,), (16,), (15,), (1,)]),
    ("next_multiple", "n, k", "returns the smallest multiple of the positive integer `k` that is greater than or equal to `n`",
     lambda n, k: -(-n // k) * k, [(10, 3), (9, 3), (0, 5), (1, 1)]),
    ("count_pairs_equal", "items", "returns how many adjacent pairs of equal elements the list `items` has",
     lambda items: sum(1 for a, b in zip(items, items[1:], strict=False) if a == b), [([1, 1, 2, 2, 2],), ([],), ([1, 2, 3],)]),
    ("distinct_sorted", "numbers", "returns the distinct integers of `numbers` in increasing order",
     lambda numbers: sorted(set(numbers)), [([3, 1, 3, 2],), ([],), ([5, 5],)]),
    ("sum_positive", "numbers", "returns the sum of the integers in `numbers` that are greater than zero",
     lambda numbers: sum(x for x in numbers if x > 0), [([1, -2, 3],), ([],), ([-1, -2],)]),
    ("char_at_ends", "text", "returns a string of the first and the last character of the non-empty string `text`",
     lambda text: text[0] + text[-1], [("hello",), ("a",), ("ab",)]),
    ("count_uppercase_words", "sentence", "returns how many space-separated words of `sentence` start with an upper-case letter",
     lambda sentence: sum(1 for w in sentence.split() if w[0].isupper()), [("Hello big World",), ("",), ("none here",)]),
    ("sum_range", "a, b", "returns the sum of the integers from `a` to `b` inclusive (0 when `a` is greater than `b`)",
     lambda a, b: sum(range(a, b + 1)), [(1, 4), (5, 5), (3, 1), (-2, 2)]),
    ("min_max_difference", "numbers", "returns the largest minus the smallest integer of the non-empty list `numbers`",
     lambda numbers: max(numbers) - min(numbers), [([3, 9, 1],), ([4],), ([-5, 5],)]),
    ("percent_of", "part, whole", "returns `part` as a whole-number percentage of the positive integer `whole`, rounded down",
     lambda part, whole: part * 100 // whole, [(1, 4), (3, 3), (0, 7), (2, 3)]),
    ("hours_to_minutes", "hours", "returns the number of minutes in `hours` hours (an integer)",
     lambda hours: hours * 60, [(0,), (2,), (24,)]),
    ("seconds_to_hms", "seconds", "returns [hours, minutes, seconds] for a non-negative number of `seconds`",
     lambda seconds: [seconds // 3600, seconds % 3600 // 60, seconds % 60], [(0,), (3661,), (59,), (7200,)]),
    ("string_contains", "text, part", "returns True when the string `part` occurs in the string `text`",
     lambda text, part: part in text, [("hello", "ell"), ("abc", "d"), ("", "")]),
    ("count_char_types", "text", "returns [letters, digits, others]: how many characters of `text` are letters, digits, anything else",
     lambda text: [sum(c.isalpha() for c in text), sum(c.isdigit() for c in text),
                   sum(not c.isalnum() for c in text)], [("a1 b!",), ("",), ("123",)]),
    ("sum_nested_pairs", "pairs", "returns the sum of all the integers in the list of two-integer lists `pairs`",
     lambda pairs: sum(a + b for a, b in pairs), [([[1, 2], [3, 4]],), ([],), ([[-1, 1]],)]),
]  # fmt: skip

TASKS = [
    (name, params, description, _cases(reference, arguments))
    for name, params, description, reference, arguments in _SPECS
]
