//! Baseline JPEGs at 1/8 and 1/4 scale from their lowest-frequency coefficients alone.
//!
//! At 1/8 scale each 8×8 block becomes one pixel, the block's mean: its DC coefficient. At 1/4
//! it becomes 2×2 pixels, which `jpeg-decoder` (and this) compute from the DC and the three
//! lowest AC coefficients. The other AC coefficients must still be read past (Huffman codes
//! carry no lengths), but they are neither stored, dequantised nor transformed: one table lookup
//! skips every code (with its value bits) that starts in the next 12 bits, and the bit reader
//! refills without branching on the data, because the 0xFF stuffing is removed first. On photos
//! 4–8× larger than the model's input, that leaves out most of a full decoder's work: this is
//! the path camera-size JPEGs take (benches/README.md).
//!
//! The planes are what `jpeg-decoder` computes at the same scale (exactly at 1/4; at 1/8 the
//! block mean is rounded to nearest, as libjpeg does, where jpeg-decoder truncates), chroma is
//! upsampled the way it does, and colour is converted with the standard JFIF integer formula
//! (tests/it/jpeg_reduced.rs checks them against `jpeg-decoder`, and the 1/8 means against the
//! full decode's). Progressive files are read at 1/8
//! only, from their DC scans. Anything outside the common case (progressive files at 1/4,
//! arithmetic coding, 12-bit samples, CMYK, Adobe RGB, unusual subsampling, separate baseline
//! scans per component, damaged or truncated data) returns `None`, and the full decoder takes the
//! file: it decodes it or reports what is wrong with it.

use image::RgbImage;

/// Decodes a JPEG (baseline, or progressive at 1/8) to RGB at `eighths`/8 of its size (1 or 2;
/// sides rounded up, as libjpeg does). `None` when the file is not one this path handles (or
/// `eighths` is another scale); the caller then uses a full decoder.
pub fn decode_reduced(bytes: &[u8], eighths: usize) -> Option<RgbImage> {
    if !matches!(eighths, 1 | 2) || !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut setup = Setup::default();
    let (scan, scan_start) = setup.read_to_scan(bytes, 2)?;
    let planes = match (setup.progressive, eighths) {
        (false, _) => {
            let tables = parse_scan(scan, setup.frame.as_ref()?, &setup.dc_tables, &setup.ac_tables)?;
            decode_planes(&setup, &tables, &bytes[scan_start..], eighths)?
        }
        // At 1/4 a progressive file needs AC scans decoded: the full decoder's work.
        (true, 1) => progressive_dc_planes(&mut setup, bytes, scan, scan_start)?,
        (true, _) => return None,
    };
    let frame = setup.frame.as_ref()?;
    let (width, height) = ((frame.width * eighths).div_ceil(8), (frame.height * eighths).div_ceil(8));
    if let [grey] = planes.as_slice() {
        let mut rgb = RgbImage::new(width as u32, height as u32);
        for (y, row) in rgb.chunks_exact_mut(3 * width).enumerate() {
            for (pixel, &value) in row.chunks_exact_mut(3).zip(&grey.samples[y * grey.stride..]) {
                pixel.fill(value);
            }
        }
        return Some(rgb);
    }
    let (h_max, v_max) = frame.max_sampling();
    let mut rgb = RgbImage::new(width as u32, height as u32);
    let mut lines = vec![vec![0u8; 2 * width + 2]; 3];
    for (y, row) in rgb.chunks_exact_mut(3 * width).enumerate() {
        for ((plane, component), line) in planes.iter().zip(&frame.components).zip(&mut lines) {
            plane.upsample_row(y, (h_max / component.h, v_max / component.v), line);
        }
        for (i, pixel) in row.chunks_exact_mut(3).enumerate() {
            pixel.copy_from_slice(&ycbcr_to_rgb(lines[0][i], lines[1][i], lines[2][i]));
        }
    }
    Some(rgb)
}

#[derive(Debug, Clone, Copy)]
struct Component {
    id: u8,
    h: usize,
    v: usize,
    quant_table: usize,
}

#[derive(Debug, Clone)]
struct Frame {
    width: usize,
    height: usize,
    components: Vec<Component>,
}

impl Frame {
    fn max_sampling(&self) -> (usize, usize) {
        let h = self.components.iter().map(|c| c.h).max().unwrap_or(1);
        let v = self.components.iter().map(|c| c.v).max().unwrap_or(1);
        (h, v)
    }
}

/// What the segments before a scan set up: the frame and the tables in force.
#[derive(Default)]
struct Setup {
    frame: Option<Frame>,
    progressive: bool,
    /// Of each quantisation table, the entries at zig-zag positions 0, 1, 2 and 4: the DC and the
    /// AC coefficients at (0,1), (1,0) and (1,1), all a 2×2 reduction uses.
    quant: [Option<[u16; 4]>; 4],
    dc_tables: [Option<HuffmanTable>; 4],
    ac_tables: [Option<HuffmanTable>; 4],
    restart_interval: usize,
    adobe: bool,
}

impl Setup {
    /// Reads the segments from `pos` (a marker) up to the next scan: returns that scan's SOS
    /// segment and where its entropy-coded data starts. `None` at the end of the picture and for
    /// anything this decoder does not take.
    fn read_to_scan<'a>(&mut self, bytes: &'a [u8], mut pos: usize) -> Option<(&'a [u8], usize)> {
        loop {
            if *bytes.get(pos)? != 0xFF {
                return None;
            }
            while *bytes.get(pos)? == 0xFF {
                pos += 1; // a marker may be preceded by fill bytes
            }
            let marker = bytes[pos];
            pos += 1;
            if matches!(marker, 0x01 | 0xD0..=0xD9) {
                return None; // the end, or a standalone marker where none belongs
            }
            let length = u16::from_be_bytes([*bytes.get(pos)?, *bytes.get(pos + 1)?]) as usize;
            let segment = bytes.get(pos + 2..pos + length.max(2))?;
            pos += length;
            match marker {
                0xC0..=0xC2 if self.frame.is_none() => {
                    self.frame = Some(parse_frame(segment)?);
                    self.progressive = marker == 0xC2;
                }
                // Other frame types (lossless, arithmetic coding), a second frame, arithmetic
                // conditioning, reserved codes.
                0xC0..=0xC3 | 0xC5..=0xCF => return None,
                0xC4 => parse_huffman_tables(segment, &mut self.dc_tables, &mut self.ac_tables)?,
                0xDB => parse_quantisation_tables(segment, &mut self.quant)?,
                0xDD => self.restart_interval = u16::from_be_bytes(segment.try_into().ok()?) as usize,
                0xEE if segment.starts_with(b"Adobe") => self.adobe = true,
                0xDA => {
                    let frame = self.frame.as_ref()?;
                    if frame.components.len() == 3 && !is_ycbcr(frame, self.adobe) {
                        return None;
                    }
                    if frame.components.iter().any(|c| self.quant[c.quant_table].is_none()) {
                        return None;
                    }
                    return Some((segment, pos));
                }
                _ => {} // APPn, COM and the like
            }
        }
    }

    /// Per frame component, the DC quantiser and the three AC ones a 2×2 reduction uses.
    fn component_quant(&self, frame: &Frame) -> Option<Vec<[i32; 4]>> {
        frame.components.iter().map(|c| self.quant[c.quant_table].map(|q| q.map(i32::from))).collect()
    }
}

/// `jpeg-decoder`'s reading of a three-component JPEG's colour space, reduced to "is it YCbCr".
fn is_ycbcr(frame: &Frame, adobe: bool) -> bool {
    match [frame.components[0].id, frame.components[1].id, frame.components[2].id] {
        [1, 2, 3] => true,
        [1, 34, 35] | [82, 71, 66] | [114, 103, 98] => false,
        _ => !adobe,
    }
}

fn parse_frame(segment: &[u8]) -> Option<Frame> {
    let [precision, h1, h0, w1, w0, count, rest @ ..] = segment else { return None };
    let (height, width) = (u16::from_be_bytes([*h1, *h0]) as usize, u16::from_be_bytes([*w1, *w0]) as usize);
    if *precision != 8 || width == 0 || height == 0 || !matches!(count, 1 | 3) || rest.len() != 3 * *count as usize {
        return None;
    }
    let components: Vec<Component> = rest
        .chunks_exact(3)
        .map(|c| Component { id: c[0], h: (c[1] >> 4) as usize, v: (c[1] & 15) as usize, quant_table: c[2] as usize })
        .collect();
    let frame = Frame { width, height, components };
    let (h_max, v_max) = frame.max_sampling();
    for c in &frame.components {
        // Chroma at full, half or (vertically) half-and-half resolution: 4:4:4, 4:2:2, 4:2:0.
        let ratio = (h_max / c.h.max(1), v_max / c.v.max(1));
        let supported = frame.components.len() == 1 || matches!(ratio, (1, 1) | (2, 1) | (2, 2));
        if !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v) || c.quant_table > 3 || !supported {
            return None;
        }
        if h_max % c.h != 0 || v_max % c.v != 0 {
            return None;
        }
    }
    Some(frame)
}

fn parse_quantisation_tables(mut segment: &[u8], quant: &mut [Option<[u16; 4]>; 4]) -> Option<()> {
    while let [info, rest @ ..] = segment {
        let (precision, id) = (info >> 4, (info & 15) as usize);
        let size = if precision == 0 { 64 } else { 128 };
        if id > 3 || precision > 1 || rest.len() < size {
            return None;
        }
        let entry =
            |i: usize| if precision == 0 { rest[i] as u16 } else { u16::from_be_bytes([rest[2 * i], rest[2 * i + 1]]) };
        quant[id] = Some([entry(0), entry(1), entry(2), entry(4)]);
        segment = &rest[size..];
    }
    Some(())
}

fn parse_huffman_tables(
    mut segment: &[u8],
    dc_tables: &mut [Option<HuffmanTable>; 4],
    ac_tables: &mut [Option<HuffmanTable>; 4],
) -> Option<()> {
    while let [info, rest @ ..] = segment {
        let (class, id) = (info >> 4, (info & 15) as usize);
        let counts: [u8; 16] = rest.get(..16)?.try_into().ok()?;
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let values = rest.get(16..16 + total)?;
        if id > 3 || class > 1 {
            return None;
        }
        let table = HuffmanTable::new(class, &counts, values)?;
        if class == 0 { &mut dc_tables[id] } else { &mut ac_tables[id] }.replace(table);
        segment = &rest[16 + total..];
    }
    Some(())
}

/// The scan's tables per frame component; `None` unless the scan is one baseline scan over all
/// components (separate scans per component are legal but rare; the full decoder takes them).
fn parse_scan<'a>(
    segment: &[u8],
    frame: &Frame,
    dc_tables: &'a [Option<HuffmanTable>; 4],
    ac_tables: &'a [Option<HuffmanTable>; 4],
) -> Option<Vec<(&'a HuffmanTable, &'a HuffmanTable)>> {
    let [count, rest @ ..] = segment else { return None };
    let count = *count as usize;
    if count != frame.components.len() || rest.len() != 2 * count + 3 {
        return None;
    }
    let (selectors, spectral) = rest.split_at(2 * count);
    if spectral != [0, 63, 0] {
        return None;
    }
    frame
        .components
        .iter()
        .zip(selectors.chunks_exact(2))
        .map(|(component, selector)| {
            if selector[0] != component.id {
                return None; // scan order differs from frame order
            }
            let (dc, ac) = ((selector[1] >> 4) as usize, (selector[1] & 15) as usize);
            Some((dc_tables.get(dc)?.as_ref()?, ac_tables.get(ac)?.as_ref()?))
        })
        .collect()
}

/// DC codes are short (at most 9 bits in the standard tables), and so are the commonest AC
/// codes: codes up to this long decode with one lookup.
const SYMBOL_LOOKUP_BITS: u32 = 9;
/// AC codes are skipped through a lookup of this many bits, several codes at a time (16 KB of
/// table, so the luma and chroma tables stay in L1).
const STEP_LOOKUP_BITS: u32 = 12;

/// How far an AC code moves through the block: EOB ends it whatever the position reached, so it
/// moves by more than any run can (a run moves ≤ 16, from ≤ 63: past 64 and below this means a
/// damaged block).
const END_OF_BLOCK: u32 = 128;

/// What skipping one AC code does.
#[derive(Clone, Copy)]
struct Step {
    /// Bits taken: the code and its value.
    bits: u32,
    /// Positions moved through the block (END_OF_BLOCK for EOB).
    advance: u32,
}

impl Step {
    fn new(symbol: u8, code_length: u32) -> Step {
        let (run, size) = ((symbol >> 4) as u32, (symbol & 15) as u32);
        let advance = match (run, size) {
            (15, 0) => 16, // sixteen zeros
            (_, 0) => END_OF_BLOCK,
            _ => run + 1,
        };
        Step { bits: code_length + size, advance }
    }
}

/// One `HuffmanTable::steps` entry: the window's first code alone (for a block's last codes),
/// and every code that lies wholly in the window, up to an EOB, taken together.
#[derive(Clone, Copy)]
struct StepsEntry(u32);

impl StepsEntry {
    fn pack(first: Step, all: Step, ends_block: bool) -> StepsEntry {
        // bits: 5 bits each (≤ 12 + 15); advances: 8 bits each (≤ END_OF_BLOCK, ≤ 12 × 16).
        StepsEntry(first.bits | first.advance << 5 | all.bits << 13 | all.advance << 18 | (ends_block as u32) << 26)
    }

    /// The step to take at block position `k`: all codes when they belong to this block (a
    /// block that reaches position 64 has no EOB: the next code is the next block's).
    #[inline(always)]
    fn at(self, k: u32) -> Step {
        let (all_advance, ends_block) = (self.0 >> 18 & 0xFF, self.0 >> 26);
        if k + all_advance + ends_block <= 64 {
            Step { bits: self.0 >> 13 & 31, advance: all_advance + ends_block * END_OF_BLOCK }
        } else {
            Step { bits: self.0 & 31, advance: self.0 >> 5 & 0xFF }
        }
    }
}

#[derive(Clone)]
struct HuffmanTable {
    /// Indexed by the next `SYMBOL_LOOKUP_BITS` bits: code length << 8 | symbol; 0 for longer
    /// codes. For DC codes, and the AC codes a 1/4 reduction needs the values of.
    symbols: Vec<u16>,
    /// AC tables: indexed by the next `STEP_LOOKUP_BITS` bits; 0 when the first code is longer.
    steps: Vec<StepsEntry>,
    /// Canonical decoding: largest code of each length (-1 if none), and the offset from a code
    /// of that length to its index in `values`.
    max_code: [i32; 17],
    value_offset: [i32; 17],
    values: Vec<u8>,
}

impl HuffmanTable {
    /// `class` 0 is a DC table, 1 an AC table. `None` when the code lengths overflow (more codes
    /// of a length than it can hold).
    fn new(class: u8, counts: &[u8; 16], values: &[u8]) -> Option<HuffmanTable> {
        let mut table = HuffmanTable {
            symbols: Vec::new(),
            steps: Vec::new(),
            max_code: [-1; 17],
            value_offset: [0; 17],
            values: values.to_vec(),
        };
        let (mut code, mut index) = (0u32, 0usize);
        for length in 1..=16 {
            let count = counts[length - 1] as usize;
            table.value_offset[length] = index as i32 - code as i32;
            code += count as u32;
            if code > 1 << length {
                return None;
            }
            index += count;
            if count > 0 {
                table.max_code[length] = code as i32 - 1;
            }
            code <<= 1;
        }
        table.symbols = first_codes(counts, values, SYMBOL_LOOKUP_BITS)
            .into_iter()
            .map(|code| code.map_or(0, |(symbol, length)| (length as u16) << 8 | symbol as u16))
            .collect();
        if class == 1 {
            let first_codes = first_codes(counts, values, STEP_LOOKUP_BITS);
            table.steps = (0..1 << STEP_LOOKUP_BITS).map(|window| steps_entry(&first_codes, window)).collect();
        }
        Some(table)
    }

    /// The code at the top of the `width`-bit `window`: its symbol and length; `None` when no
    /// code of at most `width` bits starts it.
    fn code_at(&self, window: u32, width: u32) -> Option<(u8, u32)> {
        (1..=width).find_map(|length| {
            let prefix = (window >> (width - length)) as i32;
            let index = (prefix <= self.max_code[length as usize]).then(|| prefix + self.value_offset[length as usize]);
            index.map(|i| self.values.get(i as usize).map(|&symbol| (symbol, length)))
        })?
    }

    /// The next code's symbol and length; `None` for a code the table does not hold.
    #[inline(always)]
    fn decode(&self, bits: &BitReader) -> Option<(u8, u32)> {
        match self.symbols[bits.peek(SYMBOL_LOOKUP_BITS) as usize] {
            0 => self.code_at(bits.peek(16) as u32, 16),
            entry => Some((entry as u8, (entry >> 8) as u32)),
        }
    }

    /// The next AC codes' step at block position `k`.
    #[inline(always)]
    fn step(&self, bits: &BitReader, k: u32) -> Option<Step> {
        match self.steps[bits.peek(STEP_LOOKUP_BITS) as usize] {
            StepsEntry(0) => self.code_at(bits.peek(16) as u32, 16).map(|(symbol, length)| Step::new(symbol, length)),
            entry => Some(entry.at(k)),
        }
    }
}

/// For each `width`-bit window, the code that starts it (symbol, length) if it is at most `width`
/// bits long. `counts` must have been checked not to overflow.
fn first_codes(counts: &[u8; 16], values: &[u8], width: u32) -> Vec<Option<(u8, u32)>> {
    let mut codes = vec![None; 1 << width];
    let (mut code, mut index) = (0u32, 0usize);
    for length in 1..=width {
        let count = counts[length as usize - 1] as usize;
        for &symbol in &values[index..index + count] {
            let shift = width - length;
            codes[(code << shift) as usize..((code + 1) << shift) as usize].fill(Some((symbol, length)));
            code += 1;
        }
        index += count;
        code <<= 1;
    }
    codes
}

/// The `steps` entry of one window, from the window's `first_codes`.
fn steps_entry(first_codes: &[Option<(u8, u32)>], window: u32) -> StepsEntry {
    // The step whose code starts `offset` bits into the window and ends inside it.
    let step_at = |offset: u32| {
        let (symbol, length) = first_codes[(window << offset & ((1 << STEP_LOOKUP_BITS) - 1)) as usize]?;
        (offset + length <= STEP_LOOKUP_BITS).then(|| Step::new(symbol, length))
    };
    let Some(first) = step_at(0) else { return StepsEntry(0) };
    let mut all = Step { bits: 0, advance: 0 };
    while all.bits < STEP_LOOKUP_BITS {
        let Some(step) = step_at(all.bits) else { break };
        all.bits += step.bits; // a value may run past the window: it is skipped unread
        if step.advance == END_OF_BLOCK {
            return StepsEntry::pack(first, all, true);
        }
        all.advance += step.advance;
    }
    StepsEntry::pack(first, all, false)
}

/// The entropy-coded data of a scan, with the 0x00 stuffed after each 0xFF removed, cut into
/// restart intervals (without their RST markers).
struct Intervals {
    data: Vec<u8>,
    /// Where each interval starts in `data`, and where the last ends.
    bounds: Vec<usize>,
    /// Where, in the scan's bytes, the marker after the scan starts (or their length).
    end: usize,
}

impl Intervals {
    /// `None` when the markers between intervals are not RST0..7 in turn.
    fn unstuff(scan: &[u8]) -> Option<Intervals> {
        let end = scan_end(scan);
        let scan = &scan[..end]; // no trailing fill bytes: each 0xFF is stuffing or a restart
        let mut data = Vec::with_capacity(end);
        let mut bounds = vec![0];
        let mut pos = 0;
        while let Some(ff) = memchr::memchr(0xFF, &scan[pos..]) {
            data.extend_from_slice(&scan[pos..pos + ff]);
            pos += ff + 1;
            while scan.get(pos) == Some(&0xFF) {
                pos += 1; // fill bytes
            }
            match scan.get(pos) {
                Some(0x00) => data.push(0xFF),
                Some(&marker) if marker == 0xD0 + ((bounds.len() - 1) % 8) as u8 => bounds.push(data.len()),
                _ => return None,
            }
            pos += 1;
        }
        data.extend_from_slice(&scan[pos..]); // without EOI (a cut-off file), the end check decides
        bounds.push(data.len());
        Some(Intervals { data, bounds, end })
    }

    fn get(&self, interval: usize) -> Option<&[u8]> {
        self.data.get(*self.bounds.get(interval)?..*self.bounds.get(interval + 1)?)
    }
}

/// Where, in a scan's bytes, the marker after its entropy-coded data starts (or their length).
fn scan_end(scan: &[u8]) -> usize {
    let mut pos = 0;
    while let Some(ff) = memchr::memchr(0xFF, &scan[pos..]) {
        pos += ff;
        let next = scan[pos + 1..].iter().position(|&b| b != 0xFF).map_or(scan.len(), |i| pos + 1 + i);
        match scan.get(next) {
            Some(0x00 | 0xD0..=0xD7) => pos = next + 1, // stuffing, restart marker
            _ => return pos,
        }
    }
    scan.len()
}

/// MSB-first reader of one restart interval's (unstuffed) bits. Past the end it reads zeros, and
/// `bits_used` tells whether decoding went there.
struct BitReader<'a> {
    data: &'a [u8],
    /// The next byte not yet in `buffer`.
    pos: usize,
    /// The next `count` bits, left-aligned (the bits below them may hold the start of the next
    /// byte, which the next refill ORs in again).
    buffer: u64,
    count: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0, buffer: 0, count: 0 }
    }

    /// Tops the buffer up to at least 56 bits without a branch on the data: whole bytes are
    /// added, and a byte that only partly fits is loaded again next time.
    #[inline(always)]
    fn refill(&mut self) {
        let word = match self.data.get(self.pos..self.pos + 8) {
            Some(bytes) => u64::from_be_bytes(bytes.try_into().unwrap()),
            None => self.tail_word(),
        };
        self.buffer |= word >> self.count;
        self.pos += ((63 - self.count) >> 3) as usize;
        self.count |= 56;
    }

    /// The last bytes (fewer than 8), zero-padded.
    #[cold]
    fn tail_word(&self) -> u64 {
        let mut bytes = [0u8; 8];
        let rest = self.data.get(self.pos..).unwrap_or_default();
        bytes[..rest.len()].copy_from_slice(rest);
        u64::from_be_bytes(bytes)
    }

    #[inline(always)]
    fn peek(&self, n: u32) -> u64 {
        self.buffer >> (64 - n)
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.buffer <<= n;
        self.count -= n;
    }

    /// Reads `n` (0..=16) bits as a signed coefficient (JPEG's EXTEND), without a branch on `n`
    /// or the value: sizes vary code to code.
    #[inline(always)]
    fn signed(&mut self, n: u32) -> i32 {
        // Two shifts, so that n = 0 reads nothing rather than shifting by 64.
        let value = ((self.buffer >> 1) >> (63 - n)) as i32;
        self.consume(n);
        let below_half = (value < (1 << n) >> 1) as i32;
        value - below_half * ((1 << n) - 1)
    }

    fn bits_used(&self) -> usize {
        self.pos * 8 - self.count as usize
    }

    /// Whether decoding went past the data (into the zeros read there).
    fn read_past_end(&self) -> bool {
        self.bits_used() > self.data.len() * 8
    }

    /// Whether the interval was decoded exactly: into its last byte (encoders pad the interval
    /// to a whole byte with ones) and not past its data.
    fn ended_in_last_byte(&self) -> bool {
        !self.read_past_end() && self.data.len() * 8 - self.bits_used() < 8
    }
}

/// One component's samples at the reduced scale: 1 or 2×2 per block, rows padded to whole MCUs.
struct Plane {
    samples: Vec<u8>,
    stride: usize,
    /// Samples that belong to the picture on each side (the rest is MCU padding).
    width: usize,
    height: usize,
}

impl Plane {
    /// Row `y` of the output, upsampled by `ratio` exactly as `jpeg-decoder` does (its
    /// "fancy" triangle filters for 2x, which libjpeg also uses).
    fn upsample_row(&self, y: usize, ratio: (usize, usize), out: &mut [u8]) {
        let (near, far) = match ratio.1 {
            1 => (y, y),
            // The nearer source row weighs 3/4, the other 1/4: above for even rows, below for odd.
            _ => (y / 2, if y.is_multiple_of(2) { y / 2 - (y > 0) as usize } else { (y / 2 + 1).min(self.height - 1) }),
        };
        let near = &self.samples[near * self.stride..][..self.width];
        let far = &self.samples[far * self.stride..][..self.width];
        match ratio {
            (1, 1) => out[..self.width].copy_from_slice(near),
            (2, 1) if self.width == 1 => out[..2].fill(near[0]),
            (2, 1) => {
                let w = self.width;
                out[0] = near[0];
                out[1] = ((near[0] as u32 * 3 + near[1] as u32 + 2) >> 2) as u8;
                for i in 1..w - 1 {
                    let sample = 3 * near[i] as u32 + 2;
                    out[2 * i] = ((sample + near[i - 1] as u32) >> 2) as u8;
                    out[2 * i + 1] = ((sample + near[i + 1] as u32) >> 2) as u8;
                }
                out[2 * (w - 1)] = ((near[w - 1] as u32 * 3 + near[w - 2] as u32 + 2) >> 2) as u8;
                out[2 * (w - 1) + 1] = near[w - 1];
            }
            _ => {
                // (2, 2): vertical blend first, then the horizontal triangle on the sums.
                let column = |i: usize| 3 * near[i] as u32 + far[i] as u32;
                let mut t1 = column(0);
                out[0] = ((t1 + 2) >> 2) as u8;
                for i in 1..self.width {
                    let t0 = t1;
                    t1 = column(i);
                    out[2 * i - 1] = ((3 * t0 + t1 + 8) >> 4) as u8;
                    out[2 * i] = ((3 * t1 + t0 + 8) >> 4) as u8;
                }
                out[2 * self.width - 1] = ((t1 + 2) >> 2) as u8;
            }
        }
    }
}

/// Every component's plane, zeroed, over whole MCUs (which also covers a component's own block
/// grid when it is scanned alone).
fn new_planes(frame: &Frame, eighths: usize) -> Vec<Plane> {
    let (h_max, v_max) = frame.max_sampling();
    let (mcus_x, mcus_y) = (frame.width.div_ceil(8 * h_max), frame.height.div_ceil(8 * v_max));
    frame
        .components
        .iter()
        .map(|c| Plane {
            samples: vec![0; mcus_x * c.h * mcus_y * c.v * eighths * eighths],
            stride: mcus_x * c.h * eighths,
            width: (frame.width * c.h * eighths).div_ceil(8 * h_max),
            height: (frame.height * c.v * eighths).div_ceil(8 * v_max),
        })
        .collect()
}

/// How a scan over the frame components `scanned` walks its blocks: MCUs per row, MCU count, and
/// each scanned component's blocks per MCU (across, down). One component alone is not
/// interleaved: its own block grid, one block per MCU, whatever its sampling factors.
fn scan_layout(frame: &Frame, scanned: &[usize]) -> (usize, usize, Vec<(usize, usize)>) {
    let (h_max, v_max) = frame.max_sampling();
    if let [c] = scanned {
        let c = &frame.components[*c];
        let across = (frame.width * c.h).div_ceil(8 * h_max);
        (across, across * (frame.height * c.v).div_ceil(8 * v_max), vec![(1, 1)])
    } else {
        let across = frame.width.div_ceil(8 * h_max);
        let blocks = scanned.iter().map(|&c| (frame.components[c].h, frame.components[c].v)).collect();
        (across, across * frame.height.div_ceil(8 * v_max), blocks)
    }
}

/// A baseline scan over all components, with `tables` (DC, AC) per component.
fn decode_planes(
    setup: &Setup,
    tables: &[(&HuffmanTable, &HuffmanTable)],
    scan: &[u8],
    eighths: usize,
) -> Option<Vec<Plane>> {
    let frame = setup.frame.as_ref()?;
    let all: Vec<usize> = (0..frame.components.len()).collect();
    let (mcus_x, mcus, blocks) = scan_layout(frame, &all);
    let mut planes = new_planes(frame, eighths);
    let quant = setup.component_quant(frame)?;

    let intervals = Intervals::unstuff(scan)?;
    let interval_len = if setup.restart_interval > 0 { setup.restart_interval } else { mcus };
    for (interval, first_mcu) in (0..mcus).step_by(interval_len).enumerate() {
        let mut bits = BitReader::new(intervals.get(interval)?);
        let mut predictors = [0i16; 3];
        for mcu in first_mcu..(first_mcu + interval_len).min(mcus) {
            let (mcu_x, mcu_y) = (mcu % mcus_x, mcu / mcus_x);
            // A truncated photo would otherwise be decoded to its end from zeros, then refused.
            if mcu_x == 0 && bits.read_past_end() {
                return None;
            }
            for (i, (dc_table, ac_table)) in tables.iter().enumerate() {
                let (h, v) = blocks[i];
                let plane = &mut planes[i];
                for y in mcu_y * v..(mcu_y + 1) * v {
                    for x in mcu_x * h..(mcu_x + 1) * h {
                        bits.refill();
                        predictors[i] = predictors[i].wrapping_add(read_dc_difference(&mut bits, dc_table)?);
                        let at = y * eighths * plane.stride + x * eighths;
                        if eighths == 1 {
                            skip_ac(&mut bits, ac_table, 1)?;
                            plane.samples[at] = idct_1x1(predictors[i], &quant[i]);
                        } else {
                            let (low, k) = read_low_ac(&mut bits, ac_table)?;
                            skip_ac(&mut bits, ac_table, k)?;
                            let [top, bottom] = idct_2x2(predictors[i], low, &quant[i]);
                            plane.samples[at..at + 2].copy_from_slice(&top);
                            plane.samples[at + plane.stride..at + plane.stride + 2].copy_from_slice(&bottom);
                        }
                    }
                }
            }
        }
        if !bits.ended_in_last_byte() {
            return None;
        }
    }
    Some(planes)
}

/// A progressive JPEG at 1/8: its DC scans (the first pass and each refinement) give the DC
/// coefficients complete, and its AC scans are stepped over unread, so this is far less work
/// than a baseline file at 1/8.
fn progressive_dc_planes<'a>(
    setup: &mut Setup,
    bytes: &'a [u8],
    mut scan: &'a [u8],
    mut pos: usize,
) -> Option<Vec<Plane>> {
    let frame = setup.frame.clone()?;
    let mut planes = new_planes(&frame, 1);
    // DC coefficients, laid out as the planes' samples they become.
    let mut coefficients: Vec<Vec<i16>> = planes.iter().map(|p| vec![0; p.samples.len()]).collect();
    let mut first_pass_done = vec![false; frame.components.len()];
    loop {
        let [count, rest @ ..] = scan else { return None };
        let count = *count as usize;
        let (selectors, [start, end, approximation]) = rest.split_at_checked(2 * count)? else { return None };
        let (high, low) = (approximation >> 4, (approximation & 15) as u32);
        if *start != 0 {
            pos += scan_end(&bytes[pos..]); // an AC scan: nothing in it is needed at 1/8
        } else {
            let intervals = Intervals::unstuff(&bytes[pos..])?;
            // A DC scan (DC and AC never share a progressive scan).
            if *end != 0 || low > 13 || count == 0 {
                return None;
            }
            let components: Vec<usize> = selectors
                .chunks_exact(2)
                .map(|s| frame.components.iter().position(|c| c.id == s[0]))
                .collect::<Option<_>>()?;
            let tables: Vec<&HuffmanTable> = selectors
                .chunks_exact(2)
                .map(|s| setup.dc_tables.get((s[1] >> 4) as usize)?.as_ref())
                .collect::<Option<_>>()?;
            if high == 0 {
                components.iter().for_each(|&c| first_pass_done[c] = true);
            } else if components.iter().any(|&c| !first_pass_done[c]) {
                return None;
            }
            let (mcus_across, mcu_count, mcu_blocks) = scan_layout(&frame, &components);
            let interval_len = if setup.restart_interval > 0 { setup.restart_interval } else { mcu_count };
            let mut blocks = Vec::new(); // (component, x, y) of the MCU at hand
            for (interval, first_mcu) in (0..mcu_count).step_by(interval_len.max(1)).enumerate() {
                let mut bits = BitReader::new(intervals.get(interval)?);
                let mut predictors = [0i16; 3];
                for mcu in first_mcu..(first_mcu + interval_len).min(mcu_count) {
                    let (mcu_x, mcu_y) = (mcu % mcus_across, mcu / mcus_across);
                    blocks.clear();
                    for (slot, (&c, &(h, v))) in components.iter().zip(&mcu_blocks).enumerate() {
                        blocks.extend((0..h * v).map(|b| (slot, c, mcu_x * h + b % h, mcu_y * v + b / h)));
                    }
                    for &(slot, c, x, y) in &blocks {
                        bits.refill();
                        let coefficient = &mut coefficients[c][y * planes[c].stride + x];
                        if high == 0 {
                            predictors[c] = predictors[c].wrapping_add(read_dc_difference(&mut bits, tables[slot])?);
                            *coefficient = predictors[c] << low; // shifted by the point transform
                        } else {
                            // A refinement: the next bit of each DC coefficient.
                            *coefficient |= (bits.peek(1) as i16) << low;
                            bits.consume(1);
                        }
                    }
                }
                if !bits.ended_in_last_byte() {
                    return None;
                }
            }
            pos += intervals.end;
        }
        if bytes[pos..].iter().find(|&&b| b != 0xFF) == Some(&0xD9) {
            break; // EOI
        }
        (scan, pos) = setup.read_to_scan(bytes, pos)?;
    }
    if first_pass_done.contains(&false) {
        return None;
    }
    let quant = setup.component_quant(&frame)?;
    for ((plane, coefficients), quant) in planes.iter_mut().zip(&coefficients).zip(&quant) {
        for (sample, &dc) in plane.samples.iter_mut().zip(coefficients) {
            *sample = idct_1x1(dc, quant);
        }
    }
    Some(planes)
}

/// A block's DC difference to the one before. Predictors add it as jpeg-decoder keeps them: i16,
/// wrapping, so that even hostile files decode the same.
#[inline(always)]
fn read_dc_difference(bits: &mut BitReader, table: &HuffmanTable) -> Option<i16> {
    let (size, length) = table.decode(bits)?;
    if size > 16 {
        return None;
    }
    bits.consume(length);
    Some(bits.signed(size as u32) as i16)
}

/// The 1x1 IDCT: the block mean, level-shifted, rounded to nearest as libjpeg's
/// `jpeg_idct_1x1` does (and so Pillow's `draft`). jpeg-decoder truncates: at quality 90 and
/// above (DC steps under 8) its pictures came out about 0.4 of a level darker than the full
/// decode's block means.
fn idct_1x1(dc: i16, quant: &[i32; 4]) -> u8 {
    (((dc as i32 * quant[0]) + 4) >> 3).wrapping_add(128).clamp(0, 255) as u8
}

/// jpeg-decoder's 2x2 IDCT, from the DC and `low` (the AC coefficients at zig-zag positions 1, 2
/// and 4: (0,1), (1,0), (1,1)), with its rounding and wrapping arithmetic.
fn idct_2x2(dc: i16, low: [i16; 3], quant: &[i32; 4]) -> [[u8; 2]; 2] {
    let dequantised = |c: i16, q: i32| (c as i32).wrapping_mul(q);
    let (s00, s01, s10, s11) = (
        dequantised(dc, quant[0]),
        dequantised(low[0], quant[1]),
        dequantised(low[1], quant[2]),
        dequantised(low[2], quant[3]),
    );
    let rounding = (1 << 2) + (128 << 3);
    let (x0, x2) = (s00.wrapping_add(s10).wrapping_add(rounding), s00.wrapping_sub(s10).wrapping_add(rounding));
    let (x1, x3) = (s01.wrapping_add(s11), s01.wrapping_sub(s11));
    let sample = |v: i32| (v >> 3).clamp(0, 255) as u8;
    [
        [sample(x0.wrapping_add(x1)), sample(x0.wrapping_sub(x1))],
        [sample(x2.wrapping_add(x3)), sample(x2.wrapping_sub(x3))],
    ]
}

/// Reads a block's AC coefficients up to zig-zag position 4, keeping those at 1, 2 and 4.
/// Returns them and the position reached (past 64 when the block ended).
#[inline(always)]
fn read_low_ac(bits: &mut BitReader, table: &HuffmanTable) -> Option<([i16; 3], u32)> {
    // Positions 0..=4, and one slot where coefficients beyond them land: no branch on where.
    let mut coefficients = [0i16; 6];
    let mut k = 1;
    while k <= 4 {
        bits.refill();
        let (symbol, length) = table.decode(bits)?;
        bits.consume(length);
        let step = Step::new(symbol, length);
        let size = step.bits - length;
        let value = bits.signed(size);
        // A zero run's "coefficient" (zero) and an EOB's land in the spare slot.
        coefficients[((k + step.advance - 1) as usize).min(5)] = value as i16;
        k += step.advance;
    }
    Some(([coefficients[1], coefficients[2], coefficients[4]], k))
}

/// Reads past a block's AC coefficients from zig-zag position `k` on.
#[inline(always)]
fn skip_ac(bits: &mut BitReader, table: &HuffmanTable, mut k: u32) -> Option<()> {
    /// The most bits one lookup takes: a 16-bit code and its 15-bit value.
    const MAX_STEP_BITS: u32 = 16 + 15;
    while k < 64 {
        // A refill leaves ≥ 56 bits, so two lookups per refill (the second almost always fits):
        // the refill's load then sits on every other lookup's dependency chain.
        bits.refill();
        for _ in 0..2 {
            let step = table.step(bits, k)?;
            bits.consume(step.bits);
            k += step.advance;
            if k >= 64 || bits.count < MAX_STEP_BITS {
                break;
            }
        }
    }
    // Past 64 but short of an end-of-block's jump: a run beyond the block, so damaged data.
    (k <= 64 || k > END_OF_BLOCK).then_some(())
}

/// JFIF's YCbCr → RGB in 20-bit fixed point (libjpeg's and jpeg-decoder's scalar formula).
fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    const SHIFT: i32 = 20;
    let fixed = |x: f32| (x * (1 << SHIFT) as f32 + 0.5) as i32;
    let y = ((y as i32) << SHIFT) + (1 << (SHIFT - 1));
    let (cb, cr) = (cb as i32 - 128, cr as i32 - 128);
    let clamp = |v: i32| (v >> SHIFT).clamp(0, 255) as u8;
    [clamp(y + fixed(1.402) * cr), clamp(y - fixed(0.34414) * cb - fixed(0.71414) * cr), clamp(y + fixed(1.772) * cb)]
}
