"""The multilingual analysis corpus: each line exercises a tokenization rule (Lucene 9.9.1 is the
oracle; see test_analysis_lucene.py)."""

MULTILINGUAL = [
    # punctuation, apostrophes, hyphens
    "Men's T-shirts, women’s jeans & kids' shoes!",
    "Don't stop... it's 'quoted' and \"double-quoted\" (parenthesised) [bracketed] {braced}",
    "O'Neil's rock'n'roll — the dog’s bone; the dogs’ bones",
    "wi-fi e-mail co-operate re-enter x-ray 3-D",
    "THE QUICK BROWN FOX JUMPED OVER THE LAZY DOGS",
    "Mixed CASE words: iPhone, eBay, McDonald's, NASA's",
    # numbers
    "3.14 1,000,000 1.000,5 10-20 v2.0 2nd 1st 100% $9.99 €5 ½ ² ٣",
    "version 1.2.3-beta build_42 __init__ _private a_b_c 2024-01-31 12:30:45",
    "phone +1 (555) 123-4567, ext. 89; ISBN 978-3-16-148410-0",
    # e-mail, URLs, hosts, paths
    "mail me at john.doe@example.com or jane_doe+tag@mail.example.org",
    "see https://www.example.com/path/to/page?x=1&y=2#frag and www.opensearch.org",
    "C:\\Users\\name\\file.txt /usr/local/bin/python3 foo.bar.baz",
    # CJK and other scripts
    "日本語のテキストとカタカナ、ひらがな。東京タワー",
    "中文分词测试：我爱北京天安门。",
    "한국어 텍스트 분석기 테스트입니다",
    "ไทยภาษาไทย ลาว ພາສາລາວ ខ្មែរ",
    "Ελληνικά ΟΔΟΣ σοφία Αθήνα",
    "Русский текст, Ёлка и ЁЖ",
    "עברית: ספר \"צה\"ל\" ו'גרש",
    "العربية: مرحبا بالعالم ١٢٣",
    "हिन्दी पाठ परीक्षण नमस्ते",
    "İstanbul ISTANBUL ılık Straße STRASSE ǅemal",
    # diacritics for asciifolding
    "café crème brûlée naïve résumé Ångström Øresund Œuvre ﬁnance",
    "Ça va? Où est la bibliothèque? Dvořák, Łódź, Škoda, Zürich",
    # emoji
    "I ❤ NY 👍 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇩🇪 #️⃣ 1️⃣ © ® ™ ☺ ☺️",
    "emoji🙂glued and text😀😀twice 🏳️‍🌈 flag",
    # whitespace variants and control characters
    "tab\tseparated\nnew line\r\ncarriage non\u00a0breaking thin\u2009space ideographic\u3000space",
    "zero\u200bwidth soft\u00adhyphen joiner\u200dword",
    # symbols, math, misc
    "a+b=c; x*y/z; 5°C; 10km/h; C++ C# F# .NET node.js",
    "@mention #hashtag $TICKER ~tilde ^caret |pipe| <tag> `code`",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa long",
    "",
    "   ",
    "...!!!???",
    # English morphology for the stemmers
    "running runs ran runner easily fairly generalization generously happiness relational",
    "conditional rational valenci hesitanci digitizer conformabli radicalli differentli vileli analogousli",
    "vietnamization predication operator feudalism decisiveness hopefulness callousness formaliti",
    "sensitiviti sensibiliti triplicate formative formalize electriciti electrical hopeful goodness",
    "revival allowance inference airliner gyroscopic adjustable defensible irritant replacement",
    "adjustment dependent adoption homologou communism activate angulariti homologous effective bowdlerize",
    "probate rate cease controll roll generously archaeology biology geology sky skies dying lying tying",
    "news innings outing canning howe proceed exceed succeed atlas cosmos bias andes",
    "cats' toys the children's books boss's office James' car",
]
