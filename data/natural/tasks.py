"""Small programming tasks with tests, written for the natural-defect corpus (not HumanEval).

Each task: a function name, its parameters, what it does, and test cases (arguments, expected
result) as Python literals that JSON can carry too (so the same cases test Python and JavaScript
answers). Results are compared exactly; no floats.
"""

TASKS = [
    ("sum_list", "numbers", "returns the sum of the integers in the list `numbers` (0 for an empty list)",
     [(([1, 2, 3],), 6), (([],), 0), (([-5, 5, 10],), 10), (([7],), 7)]),
    ("max_of_list", "numbers", "returns the largest integer in the non-empty list `numbers`",
     [(([1, 9, 3],), 9), (([-4, -2, -8],), -2), (([5],), 5), (([2, 2, 1],), 2)]),
    ("min_of_list", "numbers", "returns the smallest integer in the non-empty list `numbers`",
     [(([4, 1, 3],), 1), (([-1, -7, 0],), -7), (([3],), 3)]),
    ("count_vowels", "text", "returns how many vowels (a, e, i, o, u, either case) the string `text` contains",
     [(("hello",), 2), (("AEIOU",), 5), (("rhythm",), 0), (("",), 0), (("Programming",), 3)]),
    ("reverse_string", "text", "returns the string `text` reversed",
     [(("abc",), "cba"), (("",), ""), (("racecar",), "racecar"), (("Hello, World",), "dlroW ,olleH")]),
    ("is_palindrome", "text", "returns true when the string `text` reads the same forwards and backwards (exact "
     "characters, case-sensitive), else false",
     [(("level",), True), (("hello",), False), (("",), True), (("Aa",), False), (("abba",), True)]),
    ("factorial", "n", "returns n! for a non-negative integer `n` (0! is 1)",
     [((0,), 1), ((1,), 1), ((5,), 120), ((10,), 3628800)]),
    ("fibonacci", "n", "returns the n-th Fibonacci number, where fibonacci(0) is 0 and fibonacci(1) is 1",
     [((0,), 0), ((1,), 1), ((2,), 1), ((10,), 55), ((20,), 6765)]),
    ("is_even", "n", "returns true when the integer `n` is even, else false",
     [((4,), True), ((7,), False), ((0,), True), ((-3,), False)]),
    ("is_prime", "n", "returns true when the integer `n` is a prime number, else false (numbers below 2 are not "
     "prime)", [((2,), True), ((15,), False), ((17,), True), ((1,), False), ((0,), False), ((97,), True)]),
    ("gcd", "a, b", "returns the greatest common divisor of two positive integers `a` and `b`",
     [((12, 18), 6), ((7, 13), 1), ((100, 25), 25), ((9, 9), 9)]),
    ("lcm", "a, b", "returns the least common multiple of two positive integers `a` and `b`",
     [((4, 6), 12), ((3, 7), 21), ((5, 5), 5), ((12, 18), 36)]),
    ("count_words", "text", "returns the number of words in the string `text`, words being separated by one or "
     "more spaces", [(("hello world",), 2), (("",), 0), (("  one   two three ",), 3), (("single",), 1)]),
    ("capitalize_words", "text", "returns `text` with the first letter of each space-separated word in upper case "
     "and the rest unchanged", [(("hello world",), "Hello World"), (("a b c",), "A B C"), (("",), "")]),
    ("remove_duplicates", "items", "returns a new list with the duplicates of the list `items` removed, keeping "
     "the first occurrence of each value in order",
     [(([1, 2, 2, 3, 1],), [1, 2, 3]), (([],), []), ((["a", "b", "a"],), ["a", "b"]), (([5, 5, 5],), [5])]),
    ("flatten", "lists", "returns one list holding the elements of the list of lists `lists`, in order",
     [(([[1, 2], [3], []],), [1, 2, 3]), (([],), []), (([[4], [5, 6]],), [4, 5, 6])]),
    ("second_largest", "numbers", "returns the second largest distinct integer of the list `numbers` (it has at "
     "least two distinct values)", [(([1, 5, 3],), 3), (([10, 10, 9],), 9), (([-1, -2],), -2)]),
    ("average", "numbers", "returns the integer average (rounded down) of the non-empty list of integers `numbers`",
     [(([1, 2, 3],), 2), (([10],), 10), (([1, 2],), 1), (([4, 4, 5],), 4)]),
    ("count_occurrences", "items, value", "returns how many times `value` occurs in the list `items`",
     [(([1, 2, 1, 1], 1), 3), (([], 3), 0), ((["a", "b"], "c"), 0), ((["x", "x"], "x"), 2)]),
    ("celsius_to_fahrenheit", "celsius", "converts the integer temperature `celsius` to Fahrenheit (celsius * 9 / 5 "
     "+ 32), rounded down to an integer", [((0,), 32), ((100,), 212), ((-40,), -40), ((37,), 98)]),
    ("square_list", "numbers", "returns a list of the squares of the integers in `numbers`, in order",
     [(([1, 2, 3],), [1, 4, 9]), (([],), []), (([-2],), [4])]),
    ("filter_even", "numbers", "returns the even integers of the list `numbers`, in order",
     [(([1, 2, 3, 4],), [2, 4]), (([1, 3],), []), (([0, -2, 5],), [0, -2])]),
    ("sum_of_digits", "n", "returns the sum of the decimal digits of the non-negative integer `n`",
     [((123,), 6), ((0,), 0), ((9999,), 36), ((105,), 6)]),
    ("reverse_list", "items", "returns a new list with the elements of `items` in reverse order",
     [(([1, 2, 3],), [3, 2, 1]), (([],), []), ((["a"],), ["a"])]),
    ("is_sorted", "numbers", "returns true when the list `numbers` is sorted in non-decreasing order, else false",
     [(([1, 2, 2, 5],), True), (([3, 1],), False), (([],), True), (([7],), True)]),
    ("power", "base, exponent", "returns `base` raised to the non-negative integer power `exponent`",
     [((2, 10), 1024), ((5, 0), 1), ((3, 3), 27), ((-2, 3), -8)]),
    ("count_uppercase", "text", "returns the number of upper-case ASCII letters in the string `text`",
     [(("Hello World",), 2), (("abc",), 0), (("ABC",), 3), (("",), 0)]),
    ("char_frequency", "text", "returns an object/dictionary mapping each character of the string `text` to the "
     "number of times it occurs", [(("aab",), {"a": 2, "b": 1}), (("",), {}), (("xyz",), {"x": 1, "y": 1, "z": 1})]),
    ("merge_sorted", "first, second", "merges two lists of integers, each sorted in non-decreasing order, into one "
     "sorted list", [(([1, 3, 5], [2, 4]), [1, 2, 3, 4, 5]), (([], [1]), [1]), (([1, 1], [1]), [1, 1, 1])]),
    ("binary_search", "numbers, target", "returns the index of `target` in the sorted list of distinct integers "
     "`numbers`, or -1 when it is absent", [(([1, 3, 5, 7], 5), 2), (([1, 3, 5, 7], 4), -1), (([], 1), -1),
                                            (([2], 2), 0)]),
    ("to_binary", "n", "returns the binary representation of the non-negative integer `n` as a string without "
     "prefix", [((5,), "101"), ((0,), "0"), ((8,), "1000"), ((255,), "11111111")]),
    ("from_binary", "digits", "returns the integer that the string of binary digits `digits` represents",
     [(("101",), 5), (("0",), 0), (("1111",), 15), (("10000000",), 128)]),
    ("longest_word", "text", "returns the longest space-separated word of the non-empty string `text` (the first "
     "one when several are as long)", [(("a quick brown fox",), "quick"), (("hi",), "hi"), (("aa bb c",), "aa")]),
    ("count_positive", "numbers", "returns how many integers of the list `numbers` are greater than zero",
     [(([1, -2, 3, 0],), 2), (([],), 0), (([-1, -5],), 0)]),
    ("product_of_list", "numbers", "returns the product of the integers of the list `numbers` (1 for an empty "
     "list)", [(([1, 2, 3, 4],), 24), (([],), 1), (([5, 0, 2],), 0), (([-2, 3],), -6)]),
    ("is_anagram", "first, second", "returns true when the strings `first` and `second` are anagrams of each other "
     "(same letters, same counts, case-sensitive), else false",
     [(("listen", "silent"), True), (("abc", "abd"), False), (("", ""), True), (("aab", "abb"), False)]),
    ("title_case", "text", "returns `text` with every word's first letter in upper case and the others in lower "
     "case (words separated by single spaces)", [(("hELLO wORLD",), "Hello World"), (("python",), "Python")]),
    ("repeat_string", "text, times", "returns the string `text` repeated `times` times",
     [(("ab", 3), "ababab"), (("x", 0), ""), (("", 5), "")]),
    ("clamp", "value, low, high", "returns `value` limited to the range from `low` to `high` inclusive",
     [((5, 1, 10), 5), ((-3, 0, 4), 0), ((12, 0, 10), 10)]),
    ("sign", "n", "returns 1 for a positive integer `n`, -1 for a negative one and 0 for zero",
     [((9,), 1), ((-4,), -1), ((0,), 0)]),
    ("absolute_difference", "a, b", "returns the absolute value of the difference between the integers `a` and `b`",
     [((3, 8), 5), ((8, 3), 5), ((-2, 2), 4), ((0, 0), 0)]),
    ("cumulative_sum", "numbers", "returns the running totals of the list of integers `numbers`",
     [(([1, 2, 3],), [1, 3, 6]), (([],), []), (([5, -5, 5],), [5, 0, 5])]),
    ("chunk_list", "items, size", "splits the list `items` into consecutive chunks of `size` elements (the last "
     "one may be shorter)", [(([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]), (([], 3), []), (([1, 2], 2), [[1, 2]])]),
    ("rotate_left", "items, k", "returns the list `items` rotated left by `k` positions (k may exceed the length; "
     "an empty list stays empty)", [(([1, 2, 3, 4], 1), [2, 3, 4, 1]), (([1, 2, 3], 3), [1, 2, 3]),
                                    (([1, 2, 3], 4), [2, 3, 1]), (([], 2), [])]),
    ("vowel_positions", "text", "returns the 0-based indices of the lower-case vowels (a, e, i, o, u) in `text`",
     [(("banana",), [1, 3, 5]), (("xyz",), []), (("aeiou",), [0, 1, 2, 3, 4])]),
    ("digits_of", "n", "returns the list of decimal digits of the non-negative integer `n`, most significant first",
     [((123,), [1, 2, 3]), ((0,), [0]), ((907,), [9, 0, 7])]),
    ("count_consonants", "text", "returns how many ASCII letters of `text` are consonants (letters other than a, e, "
     "i, o, u in either case)", [(("hello",), 3), (("AEIOU",), 0), (("b c!",), 2)]),
    ("remove_vowels", "text", "returns `text` without its vowels (a, e, i, o, u in either case)",
     [(("hello world",), "hll wrld"), (("AEIOU",), ""), (("xyz",), "xyz")]),
    ("swap_case", "text", "returns `text` with upper-case letters turned lower-case and lower-case ones upper-case",
     [(("Hello",), "hELLO"), (("",), ""), (("abcXYZ",), "ABCxyz")]),
    ("nth_triangular", "n", "returns the n-th triangular number 1 + 2 + ... + n (0 for n = 0)",
     [((0,), 0), ((1,), 1), ((4,), 10), ((100,), 5050)]),
    ("is_leap_year", "year", "returns true when `year` is a leap year of the Gregorian calendar, else false",
     [((2000,), True), ((1900,), False), ((2024,), True), ((2023,), False)]),
    ("count_char", "text, char", "returns how many times the one-character string `char` occurs in `text`",
     [(("banana", "a"), 3), (("", "x"), 0), (("aaa", "b"), 0)]),
    ("first_repeated_char", "text", "returns the first character of `text` that occurs a second time when reading "
     "left to right, or an empty string when no character repeats",
     [(("abca",), "a"), (("abcb",), "b"), (("abc",), ""), (("",), "")]),
    ("pairwise_sums", "first, second", "returns the element-wise sums of two lists of integers of equal length",
     [(([1, 2], [3, 4]), [4, 6]), (([], []), []), (([-1], [1]), [0])]),
    ("index_of_max", "numbers", "returns the index of the largest value of the non-empty list `numbers` (the first "
     "one when it occurs several times)", [(([3, 9, 2],), 1), (([5, 5],), 0), (([-1],), 0)]),
    ("string_length", "text", "returns the number of characters of the string `text`",
     [(("hello",), 5), (("",), 0), (("a b",), 3)]),
    ("starts_with_vowel", "word", "returns true when the non-empty string `word` starts with a vowel (a, e, i, o, u "
     "in either case), else false", [(("apple",), True), (("Egg",), True), (("tree",), False)]),
    ("collatz_steps", "n", "returns how many steps the Collatz process takes to reach 1 from the positive integer "
     "`n` (halve even numbers, map odd ones to 3n + 1)", [((1,), 0), ((2,), 1), ((6,), 8), ((7,), 16)]),
    ("digital_root", "n", "returns the digital root of the non-negative integer `n` (sum its digits repeatedly "
     "until one digit remains)", [((16,), 7), ((942,), 6), ((0,), 0), ((9,), 9)]),
    ("count_divisors", "n", "returns the number of positive divisors of the positive integer `n`",
     [((1,), 1), ((6,), 4), ((12,), 6), ((13,), 2)]),
    ("sum_of_squares", "n", "returns 1^2 + 2^2 + ... + n^2 for a non-negative integer `n`",
     [((0,), 0), ((1,), 1), ((3,), 14), ((10,), 385)]),
    ("alternate_caps", "text", "returns `text` with the characters at even indices in upper case and those at odd "
     "indices in lower case", [(("abcd",), "AbCd"), (("",), ""), (("HELLO",), "HeLlO")]),
    ("common_elements", "first, second", "returns the values present in both lists of integers, in increasing order "
     "and without duplicates", [(([1, 2, 3], [2, 3, 4]), [2, 3]), (([1], [2]), []), (([3, 1, 1], [1, 3]), [1, 3])]),
    ("unique_count", "items", "returns the number of distinct values in the list `items`",
     [(([1, 2, 2, 3],), 3), (([],), 0), ((["a", "a"],), 1)]),
    ("string_to_int_list", "text", "returns the integers of the comma-separated string `text` (e.g. \"1,2,3\") as a "
     "list", [(("1,2,3",), [1, 2, 3]), (("42",), [42]), (("-1,0",), [-1, 0])]),
    ("join_words", "words, separator", "returns the strings of the list `words` joined by the string `separator`",
     [((["a", "b", "c"], "-"), "a-b-c"), (([], ","), ""), ((["x"], " "), "x")]),
    ("count_even_odd", "numbers", "returns a two-element list: the count of even and the count of odd integers of "
     "`numbers`", [(([1, 2, 3, 4, 5],), [2, 3]), (([],), [0, 0]), (([2, 4],), [2, 0])]),
    ("mirror_string", "text", "returns `text` followed by its reverse",
     [(("ab",), "abba"), (("",), ""), (("xyz",), "xyzzyx")]),
    ("has_duplicates", "items", "returns true when some value occurs more than once in the list `items`, else false",
     [(([1, 2, 3],), False), (([1, 2, 1],), True), (([],), False)]),
    ("range_list", "start, stop", "returns the list of integers from `start` up to but not including `stop` (empty "
     "when stop <= start)", [((1, 5), [1, 2, 3, 4]), ((3, 3), []), ((-2, 1), [-2, -1, 0])]),
    ("count_words_starting_with", "text, letter", "returns how many space-separated words of `text` start with the "
     "one-character string `letter`", [(("apple banana avocado", "a"), 2), (("", "a"), 0), (("bob", "a"), 0)]),
    ("running_max", "numbers", "returns the list whose i-th element is the largest of the first i + 1 integers of "
     "`numbers`", [(([1, 3, 2, 5],), [1, 3, 3, 5]), (([],), []), (([-1, -2],), [-1, -1])]),
    ("elementwise_product", "first, second", "returns the element-wise products of two lists of integers of equal "
     "length", [(([1, 2], [3, 4]), [3, 8]), (([], []), []), (([0, 5], [7, 2]), [0, 10])]),
    ("last_element", "items", "returns the last element of the non-empty list `items`",
     [(([1, 2, 3],), 3), ((["a"],), "a")]),
    ("sum_even", "numbers", "returns the sum of the even integers of the list `numbers`",
     [(([1, 2, 3, 4],), 6), (([],), 0), (([1, 3],), 0)]),
    ("sum_odd", "numbers", "returns the sum of the odd integers of the list `numbers`",
     [(([1, 2, 3, 4],), 4), (([],), 0), (([2, 4],), 0), (([-3, 3],), 0)]),
    ("caesar_shift", "text, shift", "shifts every lower-case letter of `text` forward by `shift` places in the "
     "alphabet, wrapping from z to a, and leaves other characters unchanged",
     [(("abc", 1), "bcd"), (("xyz", 3), "abc"), (("a b!", 2), "c d!")]),
    ("words_longer_than", "text, n", "returns the space-separated words of `text` that have more than `n` "
     "characters, in order", [(("a bb ccc dddd", 2), ["ccc", "dddd"]), (("", 1), []), (("hi there", 5), [])]),
    ("sort_descending", "numbers", "returns the integers of `numbers` sorted from largest to smallest",
     [(([3, 1, 2],), [3, 2, 1]), (([],), []), (([5, 5, 1],), [5, 5, 1])]),
    ("count_substring", "text, part", "returns how many times the non-empty string `part` occurs in `text`, "
     "counting overlapping occurrences", [(("aaaa", "aa"), 3), (("abc", "d"), 0), (("abab", "ab"), 2)]),
    ("is_power_of_two", "n", "returns true when the integer `n` is a positive power of two (1, 2, 4, ...), else "
     "false", [((1,), True), ((16,), True), ((18,), False), ((0,), False)]),
    ("list_difference", "first, second", "returns the elements of `first` that do not occur in `second`, in the "
     "order of `first`", [(([1, 2, 3, 4], [2, 4]), [1, 3]), (([], [1]), []), (([1, 1], []), [1, 1])]),
    ("zip_to_pairs", "first, second", "returns the list of two-element lists pairing the i-th elements of two lists "
     "of equal length", [(([1, 2], ["a", "b"]), [[1, "a"], [2, "b"]]), (([], []), [])]),
    ("max_difference", "numbers", "returns the largest value minus the smallest value of the non-empty list "
     "`numbers`", [(([3, 9, 1],), 8), (([5],), 0), (([-2, 2],), 4)]),
    ("count_lines", "text", "returns the number of lines of `text`, lines being separated by newline characters "
     "(an empty string has 0 lines)", [(("a\nb\nc",), 3), (("",), 0), (("one",), 1)]),
    ("acronym", "phrase", "returns the upper-case first letters of the space-separated words of `phrase`",
     [(("portable network graphics",), "PNG"), (("as soon as possible",), "ASAP"), (("x",), "X")]),
    ("is_subsequence", "part, text", "returns true when the characters of `part` occur in `text` in the same order "
     "(not necessarily next to each other), else false",
     [(("ace", "abcde"), True), (("aec", "abcde"), False), (("", "abc"), True)]),
    ("multiply_all", "numbers, factor", "returns the list of the integers of `numbers` each multiplied by `factor`",
     [(([1, 2, 3], 2), [2, 4, 6]), (([], 5), []), (([4], 0), [0])]),
    ("middle_element", "items", "returns the middle element of the list `items`, which has an odd length",
     [(([1, 2, 3],), 2), ((["a"],), "a"), (([5, 6, 7, 8, 9],), 7)]),
    ("count_matching_pairs", "first, second", "returns at how many positions two strings of equal length have the "
     "same character", [(("abc", "abd"), 2), (("", ""), 0), (("aaa", "bbb"), 0)]),
    ("hamming_distance", "first, second", "returns at how many positions two strings of equal length differ",
     [(("karolin", "kathrin"), 3), (("", ""), 0), (("abc", "abc"), 0)]),
    ("interleave", "first, second", "returns the elements of two lists of equal length interleaved: first[0], "
     "second[0], first[1], second[1], ...", [(([1, 3], [2, 4]), [1, 2, 3, 4]), (([], []), [])]),
    ("pad_left", "text, width, fill", "returns `text` padded on the left with the one-character string `fill` to "
     "`width` characters (unchanged when already that long)",
     [(("7", 3, "0"), "007"), (("abc", 2, "x"), "abc"), (("", 2, "-"), "--")]),
    ("is_uppercase", "text", "returns true when `text` has at least one letter and all its letters are upper case, "
     "else false", [(("HELLO",), True), (("Hello",), False), (("123",), False), (("A1",), True)]),
    ("longest_run", "items", "returns the length of the longest run of equal consecutive values in the list "
     "`items` (0 for an empty list)", [(([1, 1, 2, 2, 2, 1],), 3), (([],), 0), (([5],), 1)]),
    ("sum_pairs_to_target", "numbers, target", "returns true when two different positions of the list `numbers` "
     "hold values adding up to `target`, else false",
     [(([1, 2, 3], 5), True), (([1, 2, 3], 7), False), (([4], 8), False), (([4, 4], 8), True)]),
    ("nth_prime", "n", "returns the n-th prime number, counting from nth_prime(1) = 2",
     [((1,), 2), ((2,), 3), ((5,), 11), ((10,), 29)]),
    ("compress_string", "text", "run-length encodes `text`: each run of a repeated character becomes the character "
     "followed by the run's length", [(("aaabcc",), "a3b1c2"), (("",), ""), (("x",), "x1")]),
    ("matrix_transpose", "matrix", "returns the transpose of the rectangular matrix `matrix` (a list of rows)",
     [(([[1, 2], [3, 4]],), [[1, 3], [2, 4]]), (([[1, 2, 3]],), [[1], [2], [3]])]),
    ("dict_from_lists", "keys, values", "returns an object/dictionary mapping each string of `keys` to the value at "
     "the same position of `values`", [((["a", "b"], [1, 2]), {"a": 1, "b": 2}), (([], []), {})]),
    ("sum_matrix", "matrix", "returns the sum of all integers of the matrix `matrix` (a list of rows)",
     [(([[1, 2], [3, 4]],), 10), (([],), 0), (([[5]],), 5)]),
    ("diagonal_sum", "matrix", "returns the sum of the main diagonal of the square matrix `matrix`",
     [(([[1, 2], [3, 4]],), 5), (([[7]],), 7), (([[1, 0, 0], [0, 2, 0], [0, 0, 3]],), 6)]),
    ("word_lengths", "text", "returns the lengths of the space-separated words of `text`, in order",
     [(("a bb ccc",), [1, 2, 3]), (("",), []), (("hello",), [5])]),
    ("kth_smallest", "numbers, k", "returns the k-th smallest value (k counted from 1) of the list `numbers`",
     [(([7, 2, 9, 4], 2), 4), (([1], 1), 1), (([5, 3, 5], 3), 5)]),
    ("count_islands_1d", "bits", "returns how many separate runs of 1s the list of 0s and 1s `bits` holds",
     [(([1, 1, 0, 1],), 2), (([0, 0],), 0), (([1],), 1), (([],), 0)]),
    ("perfect_number", "n", "returns true when the positive integer `n` equals the sum of its divisors smaller than "
     "itself (6 = 1 + 2 + 3), else false", [((6,), True), ((28,), True), ((12,), False), ((1,), False)]),
    ("triangle_type", "a, b, c", "returns \"equilateral\", \"isosceles\" or \"scalene\" for a triangle with side "
     "lengths `a`, `b` and `c`", [((2, 2, 2), "equilateral"), ((2, 2, 3), "isosceles"), ((3, 4, 5), "scalene")]),
    ("fizzbuzz", "n", "returns the list of strings for 1..n where multiples of 3 are \"Fizz\", multiples of 5 "
     "\"Buzz\", multiples of both \"FizzBuzz\" and the others the number itself",
     [((5,), ["1", "2", "Fizz", "4", "Buzz"]), ((0,), []), ((15,), ["1", "2", "Fizz", "4", "Buzz", "Fizz", "7", "8",
                                                                    "Fizz", "Buzz", "11", "Fizz", "13", "14",
                                                                    "FizzBuzz"])]),
    ("valid_parentheses", "text", "returns true when the brackets ()[]{} in `text` are balanced and properly "
     "nested, else false", [(("()[]{}",), True), (("(]",), False), (("([{}])",), True), (("(",), False),
                             (("",), True)]),
    ("roman_to_int", "numeral", "returns the integer value of the Roman numeral string `numeral`",
     [(("III",), 3), (("IV",), 4), (("LVIII",), 58), (("MCMXCIV",), 1994)]),
    ("int_to_roman", "n", "returns the Roman numeral string of the integer `n` (1 to 3999)",
     [((3,), "III"), ((4,), "IV"), ((58,), "LVIII"), ((1994,), "MCMXCIV")]),
    ("bubble_sort", "numbers", "returns the integers of `numbers` sorted in increasing order (do not use a built-in "
     "sort)", [(([3, 1, 2],), [1, 2, 3]), (([],), []), (([5, -1, 5, 0],), [-1, 0, 5, 5])]),
    ("count_bits", "n", "returns the number of 1 bits in the binary representation of the non-negative integer `n`",
     [((0,), 0), ((7,), 3), ((8,), 1), ((255,), 8)]),
    ("missing_number", "numbers", "returns the one number of 0..n missing from the list `numbers`, which holds n "
     "distinct numbers of that range", [(([3, 0, 1],), 2), (([0, 1],), 2), (([1],), 0)]),
    ("majority_element", "numbers", "returns the value that occurs more than half the time in the non-empty list "
     "`numbers`", [(([3, 2, 3],), 3), (([2, 2, 1, 1, 2],), 2), (([7],), 7)]),
    ("move_zeros", "numbers", "returns `numbers` with every 0 moved to the end, the other values keeping their "
     "order", [(([0, 1, 0, 3, 12],), [1, 3, 12, 0, 0]), (([],), []), (([0],), [0])]),
    ("single_number", "numbers", "returns the value that occurs once in the list `numbers`, where every other value "
     "occurs twice", [(([2, 2, 1],), 1), (([4, 1, 2, 1, 2],), 4), (([9],), 9)]),
    ("reverse_words", "text", "returns the space-separated words of `text` in reverse order, joined by single "
     "spaces", [(("hello world",), "world hello"), (("a b c",), "c b a"), (("one",), "one")]),
    ("count_primes_below", "n", "returns how many prime numbers are smaller than the integer `n`",
     [((10,), 4), ((0,), 0), ((2,), 0), ((20,), 8)]),
    ("add_binary", "first, second", "returns the sum of two binary digit strings as a binary digit string",
     [(("11", "1"), "100"), (("1010", "1011"), "10101"), (("0", "0"), "0")]),
    ("plus_one", "digits", "adds one to the non-negative integer whose decimal digits are the list `digits` (most "
     "significant first) and returns the result's digits", [(([1, 2, 3],), [1, 2, 4]), (([9, 9],), [1, 0, 0]),
                                                             (([0],), [1])]),
    ("climb_stairs", "n", "returns in how many distinct ways one can climb `n` stairs taking 1 or 2 steps at a time",
     [((1,), 1), ((2,), 2), ((3,), 3), ((5,), 8)]),
    ("max_subarray_sum", "numbers", "returns the largest sum of a non-empty contiguous run of the list `numbers`",
     [(([-2, 1, -3, 4, -1, 2, 1, -5, 4],), 6), (([1],), 1), (([-3, -1],), -1)]),
    ("unique_chars", "text", "returns true when no character occurs twice in `text`, else false",
     [(("abc",), True), (("aba",), False), (("",), True)]),
    ("ends_with", "text, suffix", "returns true when the string `text` ends with the string `suffix`, else false",
     [(("hello", "lo"), True), (("hello", "he"), False), (("", ""), True)]),
    ("nested_sum", "items", "returns the sum of all integers in the list `items`, whose elements are integers or "
     "lists nested to any depth", [(([1, [2, [3]], 4],), 10), (([],), 0), (([[[]]],), 0)]),
]
