"""The tantivy side of an index: its schema (one `_ord` fast field + one field per text field
mapped at creation), and turning log records into tantivy documents at refresh (`store.py`)."""

from __future__ import annotations

from .documents import normalise
from .mapping import Mapping

ORD_FIELD = "_ord"
# Text is analysed in Python (analysis/); tantivy receives the tokens joined by this character and
# only splits them apart again.
TOKEN_SEPARATOR = "\x00"
WRITER_HEAP_BYTES = 64_000_000


def tantivy_name(path: str) -> str:
    return path.replace(".", "__")


class TextIndex:
    """Mixin of `IndexStore`: the tantivy index in `text/` and its writer (held only while publishing)."""

    def _open_text_index(self, mapping: Mapping, *, create: bool) -> None:
        import tantivy

        builder = tantivy.SchemaBuilder()
        builder.add_unsigned_field(ORD_FIELD, stored=False, indexed=True, fast=True)
        specs = [mapping.fields[path] for path in self.tantivy_fields]
        for spec in specs:
            builder.add_text_field(tantivy_name(spec.path), tokenizer_name=spec.params.get("analyzer", "standard"), index_option="freq")
        schema = builder.build()
        index = tantivy.Index(schema, path=str(self.folder / "text"), reuse=not create)
        splitter = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(f"[^{TOKEN_SEPARATOR}]+")).build()
        for spec in specs:
            index.register_tokenizer(spec.params.get("analyzer", "standard"), splitter)
        self.text_schema, self.text_index = schema, index

    def _text_writer_handle(self):
        if self._text_writer is None:
            self._text_writer = self.text_index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
        return self._text_writer

    def _close_text_writer(self) -> None:
        if self._text_writer is not None:
            self._text_writer.wait_merging_threads()
            self._text_writer = None

    def _commit_text(self, records: list[dict], flats: list[dict | None], first_new_ord: int) -> None:
        """Index log records (in order: a delete only hits earlier additions) and commit. Documents
        from `first_new_ord` on are deleted first: a crash between a tantivy commit and its manifest
        may have left them there, and they are indexed again from the log."""
        import tantivy

        writer = self._text_writer_handle()
        writer.delete_documents_by_query(
            tantivy.Query.range_query(self.text_schema, ORD_FIELD, tantivy.FieldType.Unsigned, lower_bound=first_new_ord)
        )
        for record, flat in zip(records, flats):
            if record["replaced"] is not None:
                writer.delete_documents_by_term(ORD_FIELD, record["replaced"])
            if record["op"] == "index":
                doc = self._text_document(record["ord"], flat)
                if doc is not None:
                    writer.add_document(doc)
        writer.commit()

    def _text_document(self, ordinal: int, flat: dict[str, list]):
        """The tantivy document of a source (`flatten_source`), or None when no text field has a token: such documents
        stay out of the text index so that its document count is Lucene's per-field `docCount`
        (exact for indices with one text field, like the CIR template)."""
        import tantivy

        doc = tantivy.Document()
        doc.add_unsigned(ORD_FIELD, ordinal)
        has_tokens = False
        for spec in (self.mapping.fields[path] for path in self.tantivy_fields):
            for value in normalise(spec, flat.get(spec.path, [])):
                tokens = self.analyzers[spec.path](value)
                if TOKEN_SEPARATOR in value:  # analysis only ever keeps or maps the text's own characters
                    tokens = [t.replace(TOKEN_SEPARATOR, "") for t in tokens]
                if any(tokens):
                    doc.add_text(tantivy_name(spec.path), TOKEN_SEPARATOR.join(tokens))
                    has_tokens = True
        return doc if has_tokens else None
