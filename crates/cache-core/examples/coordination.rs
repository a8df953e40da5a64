//! Mirrors the original's verification command: same tag, same instance; different tag, a
//! different one; two instances registered. Runs on the embedded default: a redb file per tag
//! under the resolved cache root (`GLOVEBOX_CACHE_PATH`, else `$XDG_CACHE_HOME/glovebox`, else
//! the platform cache directory).

#![allow(clippy::print_stdout, reason = "an example reports to the terminal")]

use cache_core::Coordinator;

fn main() -> Result<(), cache_core::CacheError> {
    let coordinator = Coordinator::new();
    let cache1 = coordinator.create_default_cache("test")?;
    let cache2 = coordinator.create_default_cache("test")?;
    let cache3 = coordinator.create_default_cache("different")?;

    cache1.set(b"greeting", b"hello from the shared cache", None)?;
    let read_back = cache2.get(b"greeting")?;

    println!("Same instance: {}", cache1.same_instance(&cache2));
    println!(
        "Different tag, same instance: {}",
        cache1.same_instance(&cache3)
    );
    println!("Active instances: {}", coordinator.instance_count());
    println!("Read through the second handle: {}", read_back.is_some());
    for key in coordinator.instance_keys() {
        println!("Instance: {key}");
    }
    coordinator.reset()?;
    Ok(())
}
