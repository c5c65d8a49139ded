/**
 * Is this PDF encrypted (M13)? An encrypted PDF names its security handler with
 * /Encrypt in the trailer (classic cross-reference table) or in the
 * cross-reference stream dictionary (PDF 1.5+, e.g. qpdf --object-streams).
 * With incremental updates the newest trailer is the one that counts (each
 * update must repeat /Encrypt), and it is found through the last startxref.
 */
export type PdfVerdict = 'encrypted' | 'unencrypted' | 'not-a-pdf'

export function pdfEncryption(pdf: Buffer): PdfVerdict {
  const head = pdf.subarray(0, 1024).toString('latin1')
  if (!head.includes('%PDF-')) return 'not-a-pdf'
  const tail = pdf.subarray(Math.max(0, pdf.length - 2048)).toString('latin1')
  const m = /startxref\s+(\d+)\s+%%EOF\s*$/.exec(tail) ?? /startxref\s+(\d+)/.exec(tail)
  let dict: string | undefined
  if (m) dict = dictionaryAt(pdf, Number(m[1]))
  // A damaged or unusual file: fall back to the last trailer or XRef dictionary in it.
  dict ??= lastTrailerDictionary(pdf.toString('latin1'))
  if (dict === undefined) return 'unencrypted'
  return /\/Encrypt[\s/<\d]/.test(dict) ? 'encrypted' : 'unencrypted'
}

/** The trailer dictionary after an xref table at `offset`, or the dictionary of the XRef stream object there. */
function dictionaryAt(pdf: Buffer, offset: number): string | undefined {
  if (offset <= 0 || offset >= pdf.length) return undefined
  const text = pdf.subarray(offset, Math.min(pdf.length, offset + (1 << 20))).toString('latin1')
  if (text.startsWith('xref')) {
    const t = text.indexOf('trailer')
    return t < 0 ? undefined : balanced(text, text.indexOf('<<', t))
  }
  if (/^\d+\s+\d+\s+obj/.test(text)) return balanced(text, text.indexOf('<<'))
  return undefined
}

function lastTrailerDictionary(text: string): string | undefined {
  const trailer = text.lastIndexOf('trailer')
  let xref = -1
  for (const m of text.matchAll(/\/Type\s*\/XRef\b/g)) xref = m.index
  if (trailer < 0 && xref < 0) return undefined
  return trailer > xref ? balanced(text, text.indexOf('<<', trailer)) : balanced(text, text.lastIndexOf('<<', xref))
}

/** The text of the `<< … >>` dictionary starting at `start`, nested dictionaries included. */
function balanced(text: string, start: number): string | undefined {
  if (start < 0) return undefined
  let depth = 0
  for (let i = start; i < text.length - 1; i++) {
    if (text[i] === '<' && text[i + 1] === '<') {
      depth++
      i++
    } else if (text[i] === '>' && text[i + 1] === '>') {
      depth--
      i++
      if (depth === 0) return text.slice(start, i + 1)
    }
  }
  return undefined
}
