//! Where a GeoTIFF lies: the place of its centre, for satellite and aerial tiles (chips), which
//! carry no EXIF GPS position but their georeferencing. It is read from the GeoTIFF tags (the
//! tie point and pixel scale, or the transformation matrix, and the coordinate reference
//! system's EPSG code) and brought to WGS 84 latitude and longitude for the geographic systems
//! and the projections most imagery ships in: UTM (WGS 84, ETRS89 and NAD83 zones) and Web
//! Mercator. Any other system leaves the picture without a place rather than a wrong one.

use exif::{Context, Tag, Value};

const MODEL_PIXEL_SCALE: Tag = Tag(Context::Tiff, 33550);
const MODEL_TIEPOINT: Tag = Tag(Context::Tiff, 33922);
const MODEL_TRANSFORMATION: Tag = Tag(Context::Tiff, 34264);
const GEO_KEY_DIRECTORY: Tag = Tag(Context::Tiff, 34735);

/// GeoKeys (GeoTIFF 1.1, OGC 19-008).
const MODEL_TYPE: u16 = 1024;
const RASTER_TYPE: u16 = 1025;
const GEOGRAPHIC_TYPE: u16 = 2048;
const PROJECTED_TYPE: u16 = 3072;
const MODEL_TYPE_GEOGRAPHIC: u16 = 2;
const RASTER_PIXEL_IS_POINT: u16 = 2;

/// The (latitude, longitude) of the picture's centre, if its GeoTIFF tags place it.
pub fn centre(exif: &exif::Exif) -> Option<(f64, f64)> {
    let field = |tag| exif.get_field(tag, exif::In::PRIMARY).map(|f| &f.value);
    let keys = geo_keys(field(GEO_KEY_DIRECTORY)?)?;
    let key = |id: u16| keys.iter().find(|(k, _)| *k == id).map(|(_, v)| *v);
    let (width, height) = (field(Tag::ImageWidth)?.get_uint(0)?, field(Tag::ImageLength)?.get_uint(0)?);
    // Raster space counts from the top-left corner of the first pixel (PixelIsArea), or from its
    // centre (PixelIsPoint).
    let shift = if key(RASTER_TYPE) == Some(RASTER_PIXEL_IS_POINT) { 0.5 } else { 0.0 };
    let (i, j) = (f64::from(width) / 2.0 - shift, f64::from(height) / 2.0 - shift);
    let (x, y) = match (field(MODEL_TRANSFORMATION), field(MODEL_TIEPOINT), field(MODEL_PIXEL_SCALE)) {
        (Some(Value::Double(m)), _, _) if m.len() >= 8 => (m[0] * i + m[1] * j + m[3], m[4] * i + m[5] * j + m[7]),
        (_, Some(Value::Double(tie)), Some(Value::Double(scale))) if tie.len() >= 6 && scale.len() >= 2 => {
            (tie[3] + (i - tie[0]) * scale[0], tie[4] - (j - tie[1]) * scale[1])
        }
        _ => return None,
    };
    let place = match key(PROJECTED_TYPE) {
        Some(code) if key(MODEL_TYPE) != Some(MODEL_TYPE_GEOGRAPHIC) => projected_to_geographic(code, x, y)?,
        // Geographic systems: longitude and latitude in degrees. (Those of other datums than
        // WGS 84 are within metres of it, and so is any geographic system a tile names.)
        _ if key(MODEL_TYPE) == Some(MODEL_TYPE_GEOGRAPHIC) || key(GEOGRAPHIC_TYPE).is_some() => (y, x),
        _ => return None,
    };
    crate::geo::is_valid(place.0, place.1).then_some(place)
}

/// The GeoKeys held in the directory itself (short values; the CRS codes are): (id, value).
fn geo_keys(directory: &Value) -> Option<Vec<(u16, u16)>> {
    let Value::Short(shorts) = directory else { return None };
    let count = usize::from(*shorts.get(3)?);
    let entries = shorts.get(4..4 + 4 * count)?;
    Some(entries.chunks_exact(4).filter(|e| e[1] == 0).map(|e| (e[0], e[3])).collect())
}

/// Projected coordinates (metres) of an EPSG system → (latitude, longitude), for the systems
/// this module knows.
fn projected_to_geographic(code: u16, x: f64, y: f64) -> Option<(f64, f64)> {
    match code {
        // UTM zones: WGS 84 north 32601–32660 and south 32701–32760; ETRS89 25828–25838 and
        // NAD83 26901–26923 (north; within a metre or two of WGS 84).
        32601..=32660 => Some(utm_to_geographic(code - 32600, false, x, y)),
        32701..=32760 => Some(utm_to_geographic(code - 32700, true, x, y)),
        25828..=25838 => Some(utm_to_geographic(code - 25800, false, x, y)),
        26901..=26923 => Some(utm_to_geographic(code - 26900, false, x, y)),
        // Web Mercator (and its earlier code).
        3857 | 3785 => Some(web_mercator_to_geographic(x, y)),
        _ => None,
    }
}

/// WGS 84's semi-major axis (m) and flattening.
const WGS84_A: f64 = 6_378_137.0;
const WGS84_F: f64 = 1.0 / 298.257_223_563;

/// Inverse transverse Mercator of UTM (Krüger's series to n³, as in Karney 2011: millimetres
/// within a zone).
fn utm_to_geographic(zone: u16, south: bool, easting: f64, northing: f64) -> (f64, f64) {
    const K0: f64 = 0.9996;
    let n = WGS84_F / (2.0 - WGS84_F);
    let (n2, n3) = (n * n, n * n * n);
    let a = WGS84_A / (1.0 + n) * (1.0 + n2 / 4.0 + n2 * n2 / 64.0);
    let beta = [n / 2.0 - 2.0 * n2 / 3.0 + 37.0 * n3 / 96.0, n2 / 48.0 + n3 / 15.0, 17.0 * n3 / 480.0];
    let delta = [2.0 * n - 2.0 * n2 / 3.0 - 2.0 * n3, 7.0 * n2 / 3.0 - 8.0 * n3 / 5.0, 56.0 * n3 / 15.0];
    let xi = (northing - if south { 10_000_000.0 } else { 0.0 }) / (K0 * a);
    let eta = (easting - 500_000.0) / (K0 * a);
    let (mut xi_p, mut eta_p) = (xi, eta);
    for (j, b) in beta.iter().enumerate() {
        let k = 2.0 * (j + 1) as f64;
        xi_p -= b * (k * xi).sin() * (k * eta).cosh();
        eta_p -= b * (k * xi).cos() * (k * eta).sinh();
    }
    let chi = (xi_p.sin() / eta_p.cosh()).asin();
    let latitude = chi + delta.iter().enumerate().map(|(j, d)| d * (2.0 * (j + 1) as f64 * chi).sin()).sum::<f64>();
    let central_meridian = f64::from(zone) * 6.0 - 183.0;
    let longitude = central_meridian + eta_p.sinh().atan2(xi_p.cos()).to_degrees();
    (latitude.to_degrees(), longitude)
}

/// Inverse Web Mercator (EPSG:3857: the sphere of WGS 84's semi-major axis).
fn web_mercator_to_geographic(x: f64, y: f64) -> (f64, f64) {
    let latitude = (2.0 * (y / WGS84_A).exp().atan() - std::f64::consts::FRAC_PI_2).to_degrees();
    (latitude, (x / WGS84_A).to_degrees())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against PROJ 9 (pyproj 3.7, `Transformer.from_crs(epsg, 4326)`): within a millimetre's
    /// worth of degrees (1e-8° ≈ 1 mm).
    #[test]
    fn projections_agree_with_proj() {
        let cases = [
            (32617, 630_084.0, 4_833_439.0, 43.642_570_781_756_41, -79.387_142_628_672_27), // CN Tower
            (32631, 448_252.0, 5_411_944.0, 48.858_301_863_209_68, 2.294_501_360_463_992),
            (32631, 500_000.0, 0.0, 0.0, 3.0),
            (32756, 334_368.6, 6_250_948.3, -33.868_800_403_847_06, 151.209_299_627_828_59),
            (32633, 833_978.56, 9_329_005.18, 83.305_911_955_263_26, 41.582_877_786_919_77), // zone edge, far north
            (3857, 255_422.0, 6_250_950.0, 48.858_879_307_453_826, 2.294_494_865_003_764),
            (3857, -20_037_508.34, 0.0, 0.0, -179.999_999_974_943_8),
        ];
        for (code, x, y, latitude, longitude) in cases {
            let (lat, lon) = projected_to_geographic(code, x, y).unwrap();
            assert!((lat - latitude).abs() < 1e-8 && (lon - longitude).abs() < 1e-8, "{code} {x},{y}: {lat},{lon}");
        }
        assert_eq!(projected_to_geographic(2154, 652_000.0, 6_862_000.0), None, "Lambert-93 is not known");
    }
}
