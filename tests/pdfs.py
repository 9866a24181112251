"""Small real PDFs for tests, written by hand (no files from anywhere else).

`make_pdf(["first page", None])`: a page with each string as text (one line per "\\n",
Helvetica) and, for None, a page that is only an image (a scan, as far as a reader can
tell). `encrypted` uses pypdf's own writer to lock one with a password.
"""

import io

from pypdf import PdfReader, PdfWriter


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _stream(head: str, data: bytes) -> bytes:
    return f"<< {head} /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"


def make_pdf(pages: list[str | None], *, title: str | None = None) -> bytes:
    objects: list[bytes] = [b"", b""]  # 1: the catalog, 2: the page tree (written last)

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    image = add(
        _stream(
            "/Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray "
            "/BitsPerComponent 8",
            b"\x00\x80\x80\xff",
        )
    )
    kids = []
    for text in pages:
        images = ""
        if text is None:
            operations = "q 500 0 0 700 50 50 cm /Im1 Do Q"
            images = f" /XObject << /Im1 {image} 0 R >>"
        else:
            lines = " ".join(f"({_escaped(line)}) Tj T*" for line in text.split("\n"))
            operations = f"BT /F1 12 Tf 14 TL 72 720 Td {lines} ET"
        content = add(_stream("", operations.encode("latin-1")))
        kids.append(
            add(
                (
                    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                    f"/Resources << /Font << /F1 {font} 0 R >>{images} >> "
                    f"/Contents {content} 0 R >>"
                ).encode()
            )
        )
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = (
        f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>"
    ).encode()
    info = f" /Info {add(f'<< /Title ({_escaped(title)}) >>'.encode())} 0 R" if title else ""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def encrypted(pdf: bytes, user_password: str, owner_password: str = "owner") -> bytes:
    """`pdf` locked: an empty `user_password` opens it (only the owner's is set)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password, owner_password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
